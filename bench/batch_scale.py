"""The batch at scale, one ``Sam3BatchOperator`` task run by ``dag.test()`` in a fresh interpreter against the
emulator (a separate process), side by side in one run:

- ``rss``: worker peak RSS for 200 and for 2,000 photos of about 2 MB each, from a folder (worker mode), and
  their ratio;
- ``hundred``: 100,000 small images (emulator service time 0, concurrency 64), deferrable: peak RSS, the largest
  trigger kwargs at any deferral, wall time, and a check of the 100,000-row manifest;
- ``upload``: submit time of one image inline (data URI) vs through fal's storage, by size, which sets the upload
  threshold (``batch.inputs.DEFAULT_UPLOAD_ABOVE_BYTES``).

The photos are distinct files (hard links to 20 noise PNGs of about 2 MB: same bytes, distinct paths, distinct
requests), so the disk holds 40 MB instead of 4 GB. Peak RSS is the child's ``ru_maxrss``: Airflow, the provider,
the task and, for deferrable runs, the trigger (``dag.test()`` runs it in the same process).

    .venv/bin/python bench/batch_scale.py                         # all three, print the tables
    .venv/bin/python bench/batch_scale.py --only rss --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from _doc import command_line, machine, today, update_section  # noqa: E402

CHILD = r"""
import json, os, resource, time
from airflow.sdk import dag
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.triggers.batch import kwargs_size

options = json.loads(os.environ["SAM3_BENCH_OPTIONS"])


@dag(dag_id="bench_batch_scale", schedule=None)
def bench():
    Sam3BatchOperator(task_id="segment", images=options["images"], output_path=options["out"],
                      arguments={"prompt": "box"}, on_image_failure="report", **options["operator"])


the_dag = bench()

if __name__ == "__main__":
    sizes = []
    original = Sam3BatchOperator._trigger

    def recording(self, state, request_ids, fire_at):
        trigger = original(self, state, request_ids, fire_at)
        sizes.append(kwargs_size(trigger))
        return trigger

    Sam3BatchOperator._trigger = recording
    started = time.monotonic()
    run = the_dag.test()
    wall = time.monotonic() - started
    ti = run.get_task_instances()[0]
    summary = ti.xcom_pull(task_ids="segment") if ti.state == "success" else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print("RESULT " + json.dumps({
        "state": ti.state, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime, "summary": summary, "kwargs_sizes": sizes,
    }))
"""


class Emulator:
    """The emulator CLI in its own process (its CPU and memory are not the worker's)."""

    def __init__(self, workdir: Path, **knobs: object) -> None:
        self.env_file = workdir / "fal.env"
        args = [sys.executable, "-m", "airflow_provider_sam3.testing.emulator", "--port", "0"]
        args += ["--env-file", str(self.env_file), "--log-level", "WARNING"]
        for name, value in knobs.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not self.env_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.2)

    def env(self) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        return {name: shlex.split(value)[0] for name, value in pairs}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def airflow_env(home: Path, emulator: Emulator) -> dict[str, str]:
    env = {**os.environ, **emulator.env(), "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    return env


def migrate(home: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )


def run_batch(env: dict[str, str], images: str, out: Path, **operator: object) -> dict:
    """One batch task by ``dag.test()`` in a fresh interpreter (its DAG file in its own dags folder)."""
    options = json.dumps({"images": images, "out": str(out), "operator": operator})
    dags = out.parent / f"dags-{out.name}"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "bench_batch_scale.py").write_text(CHILD)
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "SAM3_BENCH_OPTIONS": options}
    done = subprocess.run(
        [sys.executable, str(dags / "bench_batch_scale.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=4 * 3600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the batch run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def noise_photos(folder: Path, count: int, distinct: int = 20) -> Path:
    """``count`` PNG files of about 2 MB (hard links to ``distinct`` noise images)."""
    import numpy
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = []
    rng = numpy.random.default_rng(5)
    for number in range(distinct):
        path = folder.parent / f"{folder.name}-src-{number}.png"
        pixels = rng.integers(0, 255, size=(820, 820, 3), dtype=numpy.uint8)
        pixels[200:500, 200:500] = (240, 200, 60)
        Image.fromarray(pixels).save(path, compress_level=1)
        sources.append(path)
    for number in range(count):
        os.link(sources[number % distinct], folder / f"photo_{number:06d}.png")
    return folder


def tiny_photos(folder: Path, count: int) -> Path:
    from photos import write_photos

    distinct = write_photos(folder.parent / f"{folder.name}-src", 50, seed=11)
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(count):
        os.link(distinct[number % len(distinct)], folder / f"img_{number:06d}.png")
    return folder


def check_manifest(path: str, expected: int) -> str:
    rows = 0
    request_ids = set()
    for index, line in enumerate(open(path.removeprefix("file://"))):
        row = json.loads(line)
        assert row["index"] == index and row["status"] == "succeeded", row
        request_ids.add(row["request_id"])
        rows += 1
    assert rows == expected == len(request_ids), (rows, len(request_ids))
    return f"{rows:,} rows in input order, all succeeded, {len(request_ids):,} distinct requests"


def bench_rss(work: Path, small: int, large: int) -> str:
    emulator = Emulator(work, service_time=0.0, concurrency=16)
    try:
        home = work / "home"
        migrate(home)
        env = airflow_env(home, emulator)
        results = {}
        for count in (small, large):
            folder = noise_photos(work / f"photos{count}", count)
            size = sum(p.stat().st_size for p in list(folder.iterdir())[:20]) / 20 / 1e6
            result = run_batch(env, str(folder), work / f"out{count}", deferrable=False)
            assert result["summary"]["succeeded"] == count, result["summary"]
            results[count] = (result, size)
    finally:
        emulator.stop()
    (r_small, size), (r_large, _) = results[small], results[large]
    ratio = r_large["peak_rss_mb"] / r_small["peak_rss_mb"]
    return (
        f"Photos of {size:.1f} MB each (noise PNGs, 820x820), worker mode (`deferrable=False`), emulator service "
        "time 0, concurrency 16, one `dag.test()` per row in a fresh interpreter.\n\n"
        "| photos | peak RSS | wall time | submissions |\n|---|---|---|---|\n"
        f"| {small:,} | {r_small['peak_rss_mb']:.0f} MB | {r_small['wall_s']:.0f} s | "
        f"{r_small['summary']['submissions']:,} |\n"
        f"| {large:,} | {r_large['peak_rss_mb']:.0f} MB | {r_large['wall_s']:.0f} s | "
        f"{r_large['summary']['submissions']:,} |\n\n"
        f"Peak RSS ratio {large:,} / {small:,} photos: **{ratio:.2f}x** (target: within 1.3x, and below 600 MB)."
    )


def bench_hundred(work: Path, count: int) -> str:
    emulator = Emulator(work, service_time=0.0, concurrency=64, in_progress_logs=0, result_retention=7200)
    try:
        home = work / "home-hundred"
        migrate(home)
        folder = tiny_photos(work / "tiny", count)
        result = run_batch(
            airflow_env(home, emulator), str(folder), work / "out-hundred", deferrable=True, submit_concurrency=16
        )
    finally:
        emulator.stop()
    summary = result["summary"]
    checked = check_manifest(summary["manifest"], count)
    sizes = result["kwargs_sizes"]
    return (
        f"{count:,} small PNGs (64x48 to 96x64), deferrable, default `max_in_flight` (256), `submit_concurrency=16`, "
        "emulator service time 0 and concurrency 64; one `dag.test()` (the trigger runs in the same process).\n\n"
        "| images | peak RSS | largest trigger kwargs | deferrals | wall time | submissions | manifest |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {count:,} | {result['peak_rss_mb']:.0f} MB | {max(sizes, default=0):,} bytes | {len(sizes)} | "
        f"{result['wall_s'] / 60:.1f} min | {summary['submissions']:,} | {checked} |"
    )


def bench_upload(work: Path) -> str:
    """Submit (and upload) time per image, inline vs through fal's storage, at several sizes."""
    import asyncio

    emulator = Emulator(work, service_time=0.0, concurrency=8)
    os.environ.update(emulator.env())
    import fal_client.client

    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.media.inputs import to_data_uri

    base = "https://" + emulator.env()["FAL_QUEUE_RUN_HOST"]
    fal_client.client.REST_URL = fal_client.client.CDN_URL = base
    rows = []

    async def measure(data: bytes, upload: bool, repeat: int = 5) -> float:
        hook = FalHook()
        try:
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                url = await hook.aupload(data, "image/png", "p.png") if upload else to_data_uri(data, "image/png")
                ref = await hook.asubmit("fal-ai/sam-3/image", {"image_url": url, "prompt": "box"})
                times.append(time.perf_counter() - started)
                await hook.acancel(ref)
            return sorted(times)[len(times) // 2]
        finally:
            await hook.aclose()

    try:
        for megabytes in (1, 2, 4, 8, 16):
            data = os.urandom(megabytes * 1024 * 1024)
            inline, uploaded = asyncio.run(measure(data, False)), asyncio.run(measure(data, True))
            rows.append(
                f"| {megabytes} MiB | {inline * 1000:.0f} ms | {uploaded * 1000:.0f} ms | {uploaded / inline:.2f} |"
            )
    finally:
        emulator.stop()
    return (
        "Median of 5: the submit call with the image inline (data URI: base64 in the JSON body), vs the upload to "
        "fal's storage then a submit carrying the URL; emulator on loopback, so network time is near 0 and what "
        "is measured is encoding and handling (a real link to fal adds the transfer, about 4/3 larger inline).\n\n"
        "| input | inline submit | upload + submit | ratio |\n|---|---|---|---|\n" + "\n".join(rows)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["rss", "hundred", "upload"], action="append")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--hundred", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    wanted = args.only or ["rss", "hundred", "upload"]
    parts = []
    with tempfile.TemporaryDirectory(prefix="sam3-bench-scale-") as work:
        if "upload" in wanted:
            parts.append("### Inline vs fal storage\n\n" + bench_upload(Path(work)))
            print(parts[-1], flush=True)
        if "rss" in wanted:
            parts.append("### Worker memory, 200 vs 2,000 photos\n\n" + bench_rss(Path(work), args.small, args.large))
            print(parts[-1], flush=True)
        if "hundred" in wanted:
            parts.append(f"### {args.hundred:,} images in one task\n\n" + bench_hundred(Path(work), args.hundred))
            print(parts[-1], flush=True)
    body = f"## Batch at scale\n\n{today()}; {machine()}.\n\n`{command_line()}`\n\n" + "\n\n".join(parts)
    if args.out:
        update_section(args.out, "batch-scale" + ("" if not args.only else "-" + "-".join(args.only)), body)
    print(f"peak RSS of this script: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
