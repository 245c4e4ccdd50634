"""Throughput for N images against the emulator (fixed service time, account concurrency): the batch operator vs
one deferrable task per image (dynamic task mapping) vs a ``fal_client.subscribe`` thread pool, side by side in
one run, each against the ideal N / concurrency * service time.

The Airflow paths run in a real ``airflow standalone`` (scheduler, LocalExecutor, triggerer) on SQLite; the
thread pool runs in this process. Times are from triggering the DAG run to its end (what a user waits for).

    .venv/bin/python bench/throughput.py                 # 1,000 images, 0.5 s, concurrency 16, all three
    .venv/bin/python bench/throughput.py --only batch --images 1000 --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "deployment"))
sys.path.insert(0, str(REPO / "bench"))

from _doc import command_line, machine, today, update_section  # noqa: E402
from harness import AirflowDeployment  # noqa: E402

ENDPOINT = "fal-ai/sam-3/image"
PEER_ARGUMENTS = {"prompt": "box", "include_scores": True, "include_boxes": True, "sync_mode": True}
"""What the batch sends for each image by default (its ``BATCH_DEFAULTS`` and the DAG's prompt)."""
BLOCK_WARNING = re.compile(r"blocked|event loop|took too long", re.IGNORECASE)

BATCH_DAG = """
import time
from airflow.sdk import dag
from airflow_provider_sam3.operators.batch import Sam3BatchOperator

class CpuTimedBatch(Sam3BatchOperator):
    '''The batch operator; its summary also holds the task process's CPU seconds (when it never deferred).'''

    def execute(self, context):
        started = time.process_time()
        summary = super().execute(context)
        if isinstance(summary, dict):
            summary["task_cpu_seconds"] = time.process_time() - started
        return summary

@dag(dag_id="bench_batch", schedule=None, catchup=False, params={"images": "", "out": ""})
def bench_batch():
    CpuTimedBatch(task_id="segment", images="{{ params.images }}", output_path="{{ params.out }}",
                  arguments={"prompt": "box"}, deferrable=True, on_image_failure="report", retries=2,
                  retry_delay=1)

bench_batch()
"""

MAPPED_DAG = """
from airflow.sdk import dag
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

@dag(dag_id="bench_mapped", schedule=None, catchup=False)
def bench_mapped():
    SegmentImageOperator.partial(task_id="segment", prompt="box", include_scores=True, include_boxes=True,
                                 output_path=__OUT__, deferrable=True, retries=2, retry_delay=1,
                                 max_active_tis_per_dag=None).expand(image=__PATHS__)

bench_mapped()
"""


def write_photos(folder: Path, count: int) -> list[Path]:
    from PIL import Image, ImageDraw

    rng = random.Random(11)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        image = Image.new("RGB", (64, 48), (15, 20, 30))
        x0, y0 = rng.randrange(2, 30), rng.randrange(2, 20)
        ImageDraw.Draw(image).rectangle(
            [x0, y0, x0 + rng.randrange(8, 30), y0 + rng.randrange(8, 24)], fill=(230, 200, 60)
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        path = folder / f"photo_{number:05d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


class Emulator:
    """The emulator CLI in its own process (so its CPU does not share a GIL with what is measured)."""

    def __init__(self, workdir: Path, service_time: float, concurrency: int) -> None:
        env_file = workdir / "emulator.env"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airflow_provider_sam3.testing.emulator",
                "--env-file",
                str(env_file),
                "--service-time",
                str(service_time),
                "--concurrency",
                str(concurrency),
                "--log-level",
                "WARNING",
                "--cert-dir",
                str(workdir / "certs"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "emulator.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while not env_file.exists() or "FAL_KEY" not in env_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the emulator did not start; see emulator.log")
            time.sleep(0.1)
        self.env = dict(re.findall(r"^(?:export )?(\w+)=(.*)$", env_file.read_text(), re.MULTILINE))
        self.env = {k: v.strip("'\"") for k, v in self.env.items()}

    def counters(self) -> dict:
        import httpx

        url = f"https://{self.env['FAL_QUEUE_RUN_HOST']}/_emulator/counters"
        return httpx.get(url, verify=self.env["SSL_CERT_FILE"]).json()

    def reset(self) -> None:
        import httpx

        httpx.post(f"https://{self.env['FAL_QUEUE_RUN_HOST']}/_emulator/reset", verify=self.env["SSL_CERT_FILE"])

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def run_dag(
    deployment: AirflowDeployment, filename: str, source: str, dag_id: str, timeout: float, conf: dict | None = None
) -> dict:
    if filename not in {p.name for p in deployment.dags_folder.iterdir()}:
        deployment.write_dag(filename, source)
        deployment.wait_for_dag(dag_id, timeout=120)
    started = time.monotonic()
    run_id = deployment.trigger(dag_id, conf=conf)
    state = deployment.wait_for_run(dag_id, run_id, timeout=timeout)
    seconds = time.monotonic() - started
    return {"state": state, "seconds": seconds, "run_id": run_id}


def triggerer_block_warnings(deployment: AirflowDeployment) -> list[str]:
    lines = []
    for path in [deployment.log_path, *deployment.home.glob("logs/**/*.log*")]:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        lines += [
            line
            for line in text.splitlines()
            if "trigger" in line.lower() and BLOCK_WARNING.search(line) and "warning" in line.lower()
        ]
    return lines


def run_peer(paths: list[Path], out: Path, concurrency: int) -> dict:
    """A hand-written async loop: submit, wait, store each mask and the result JSON, ``concurrency`` at a time."""
    import fal_client

    async def main() -> int:
        client = fal_client.AsyncClient()
        gate = asyncio.Semaphore(concurrency)

        async def one(path: Path) -> int:
            async with gate:
                data = await asyncio.to_thread(path.read_bytes)
                image_url = "data:image/png;base64," + base64.b64encode(data).decode()
                handle = await client.submit(ENDPOINT, arguments={"image_url": image_url, **PEER_ARGUMENTS})
                result = await handle.get()
            folder = out / handle.request_id
            await asyncio.to_thread(store_result, folder, result)
            return len(result.get("masks") or [])

        masks = await asyncio.gather(*(one(path) for path in paths))
        return sum(1 for count in masks if count)

    return {"succeeded": asyncio.run(main())}


def store_result(folder: Path, result: dict) -> None:
    """Each mask's bytes (inline data URIs, as the batch asks for) in a file, then the result JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, mask in enumerate(result.get("masks") or []):
        url = mask.get("url", "")
        if url.startswith("data:"):
            (folder / f"mask_{number:03d}.png").write_bytes(base64.b64decode(url.split(",", 1)[1]))
    (folder / "result.json").write_text(json.dumps(result))


def in_process(path, emulator: Emulator, *args) -> dict:
    """Run a path in this process against the emulator, with its wall time and this process's CPU time."""
    os.environ.update(emulator.env)
    import fal_client.client as fal_module

    fal_module.QUEUE_URL_FORMAT = f"https://{emulator.env['FAL_QUEUE_RUN_HOST']}/"
    cpu, wall = time.process_time(), time.perf_counter()
    result = path(*args)
    seconds = time.perf_counter() - wall
    return {"state": "success", **result, "seconds": seconds, "cpu_seconds": time.process_time() - cpu}


def subscribe_pool(paths: list[Path], concurrency: int) -> dict:
    """The lower bound: ``fal_client.subscribe`` in a thread pool, storing nothing (no Airflow at all)."""
    import fal_client

    from airflow_provider_sam3.media.inputs import prepare_image

    client = fal_client.SyncClient()

    def one(path: Path) -> dict:
        image_url = prepare_image(str(path)).url
        return client.subscribe(ENDPOINT, arguments={"image_url": image_url, **PEER_ARGUMENTS})

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, paths))
    return {"succeeded": sum(1 for result in results if result.get("masks"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--service-time", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", choices=["batch", "mapped", "peer", "subscribe"], action="append")
    parser.add_argument("--out", type=Path, help="update the throughput section of this markdown file")
    args = parser.parse_args()
    which = args.only or ["batch", "mapped", "peer", "subscribe"]
    ideal = args.images / args.concurrency * args.service_time

    workdir = Path(tempfile.mkdtemp(prefix="sam3-bench-"))
    paths = write_photos(workdir / "images", args.images)
    emulator = Emulator(workdir, args.service_time, args.concurrency)
    results: dict[str, dict] = {}
    deployment = None
    try:
        if "batch" in which or "mapped" in which:
            deployment = AirflowDeployment(
                extra_env={
                    **emulator.env,
                    "AIRFLOW__CORE__PARALLELISM": "8",
                    "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                },
                parallelism=8,
                base_dir=workdir,
            ).start()
        if "batch" in which:
            # A warm-up run of 16 images first: worker processes exist and the DAG is parsed, as in production.
            warm = write_photos(workdir / "warm-up", 16)
            run_dag(
                deployment,
                "bench_batch.py",
                BATCH_DAG,
                "bench_batch",
                timeout=600,
                conf={"images": str(warm[0].parent), "out": str(workdir / "out-warm-up")},
            )
            emulator.reset()
            results["batch"] = run_dag(
                deployment,
                "bench_batch.py",
                BATCH_DAG,
                "bench_batch",
                timeout=1800,
                conf={"images": str(workdir / "images"), "out": str(workdir / "out-batch")},
            )
            results["batch"]["submissions"] = emulator.counters()["submissions"]["total"]
            summary = deployment.xcom("bench_batch", results["batch"]["run_id"], "segment")
            results["batch"]["summary"] = (
                {k: summary.get(k) for k in ("images", "succeeded", "failed", "wall_seconds", "task_cpu_seconds")}
                if isinstance(summary, dict)
                else summary
            )
            results["batch"]["task_seconds"] = summary.get("wall_seconds") if isinstance(summary, dict) else None
            results["batch"]["cpu_seconds"] = summary.get("task_cpu_seconds") if isinstance(summary, dict) else None
            results["batch"]["block_warnings"] = len(triggerer_block_warnings(deployment))
        if "mapped" in which:
            emulator.reset()
            source = MAPPED_DAG.replace("__PATHS__", repr([str(p) for p in paths])).replace(
                "__OUT__", repr(str(workdir / "out-mapped"))
            )
            results["mapped"] = run_dag(deployment, "bench_mapped.py", source, "bench_mapped", timeout=3600)
            results["mapped"]["submissions"] = emulator.counters()["submissions"]["total"]
            results["mapped"]["task_states"] = dict(
                deployment.query(
                    "SELECT state || ' (try ' || try_number || ')', COUNT(*) FROM task_instance "
                    "WHERE dag_id = 'bench_mapped' AND run_id = ? GROUP BY 1",
                    (results["mapped"]["run_id"],),
                )
            )
        if "peer" in which:
            emulator.reset()
            results["peer"] = in_process(run_peer, emulator, paths, workdir / "out-peer", args.concurrency)
            results["peer"]["state"] = "success" if results["peer"]["succeeded"] == len(paths) else "failed"
            results["peer"]["submissions"] = emulator.counters()["submissions"]["total"]
        if "subscribe" in which:
            emulator.reset()
            results["subscribe"] = in_process(subscribe_pool, emulator, paths, args.concurrency)
            results["subscribe"]["state"] = "success" if results["subscribe"]["succeeded"] == len(paths) else "failed"
            results["subscribe"]["submissions"] = emulator.counters()["submissions"]["total"]
    finally:
        if deployment is not None:
            deployment.stop()
        emulator.stop()

    print(json.dumps(results, indent=2, default=str))
    table = render(results, args, ideal)
    print(table)
    if args.out:
        update_section(args.out, "throughput", table)


def render(results: dict, args: argparse.Namespace, ideal: float) -> str:
    names = {
        "batch": "Sam3BatchOperator (one task, one trigger)",
        "mapped": "one deferrable SegmentImageOperator per image (dynamic mapping)",
        "peer": "fair peer: async fal-client loop storing masks + result JSON (no Airflow)",
        "subscribe": f"fal_client.subscribe in a {args.concurrency}-thread pool, storing nothing (no Airflow)",
    }
    lines = [
        "## Throughput: batch vs one task per image vs a fair hand-written loop vs a subscribe thread pool",
        "",
        f"Machine: {machine()}. Measured {today()} with `{command_line()}`.",
        "",
        f"{args.images} images, emulator service time {args.service_time} s, account concurrency "
        f"{args.concurrency}: ideal {ideal:.2f} s. Run wall time: from triggering the DAG run to its end (what a "
        "user waits for, Airflow's scheduling included). The batch's own time: from its first submission to its "
        "manifest (the summary's `wall_seconds`). The emulator, the Airflow components and the client share the "
        "same 2 cores. CPU per image: the process that ran the path (for the batch, its task process while it ran, "
        "when it never deferred; the journal writes' other half runs in the task's supervisor and the API server).",
        "",
        "| path | state | run wall time (s) | x ideal | batch's own time (s) | x ideal | CPU per image (ms) "
        "| submissions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, result in results.items():
        own = result.get("task_seconds")
        own_cells = f"{own:.1f} | {own / ideal:.2f}" if own else "- | -"
        cpu = result.get("cpu_seconds")
        cpu_cell = f"{cpu / args.images * 1000:.2f}" if cpu else "-"
        lines.append(
            f"| {names[key]} | {result['state']} | {result['seconds']:.1f} | "
            f"{result['seconds'] / ideal:.2f} | {own_cells} | {cpu_cell} | {result.get('submissions')} |"
        )
    lines.append("")
    if "batch" in results and "mapped" in results:
        lines.append(
            f"Batch vs one task per image: {results['mapped']['seconds'] / results['batch']['seconds']:.1f}x faster.  "
        )
    if "batch" in results and "peer" in results and results["batch"].get("task_seconds"):
        ratio = results["batch"]["task_seconds"] / results["peer"]["seconds"]
        lines.append(f"Batch's own time vs the fair peer: {ratio:.2f}x.  ")
    if "mapped" in results:
        census = ", ".join(f"{count} {state}" for state, count in sorted(results["mapped"]["task_states"].items()))
        lines.append(f"Mapped task instances at the end: {census}.  ")
    if "batch" in results:
        lines.append(
            f"Event-loop block warnings in the triggerer during the batch: {results['batch'].get('block_warnings')}."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
