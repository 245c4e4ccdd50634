"""The emulator's memory and CPU on large photos: RSS over 1,000 finished requests of 3 MP photos, and 12 MP photos
segmented per second.

The emulator runs as its own process (its CLI, as a user starts it); this process drives it with the unmodified
``fal_client`` (submit, wait, fetch the result: what the operators do) from a thread pool, sending each photo as a
JPEG data URI (what the operators send for a local file). RSS and CPU time are read from ``/proc/<pid>`` of the
emulator alone.

    .venv/bin/python bench/emulator_memory.py                          # both tables
    .venv/bin/python bench/emulator_memory.py --out docs/benchmarks.md # and update the "emulator-memory" section
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from _doc import command_line, machine, today, update_section  # noqa: E402

SECTION = "emulator-memory"
CHECKPOINTS = (1, 100, 250, 500, 750, 1000)
POLL_INTERVAL_S = 0.2
"""Status polling of each request, at the provider's fastest (hooks.settings.MIN_POLL_INTERVAL)."""


def photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG that compresses like a photo (gradients, shapes, grain), with one salient object."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 90 // width + 40, y * 80 // height + 50, (x + y) * 60 // (width + height) + 60], axis=-1)
    grain = rng.integers(-12, 12, size=(height, width, 3))
    image = Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse([width * 0.3, height * 0.25, width * 0.7, height * 0.8], fill=(235, 200, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()


def _proc(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of ``pid``."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


class Emulator:
    def __init__(self, concurrency: int, extra: list[str]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sam3-bench-emulator-"))
        env_file = self.dir / "fal.env"
        command = [
            sys.executable,
            "-m",
            "airflow_provider_sam3.testing.emulator",
            "--port",
            "0",
            "--api-key",
            "bench-key",
            "--env-file",
            str(env_file),
            "--service-time",
            "0",
            "--in-progress-logs",
            "0",
            "--concurrency",
            str(concurrency),
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.process = subprocess.Popen(command, cwd=REPO)
        deadline = time.monotonic() + 60
        while not env_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.1)
        for line in env_file.read_text().splitlines():
            name, _, value = line.partition("=")
            os.environ[name] = value.strip("'")

    def usage(self) -> tuple[int, float]:
        return _proc(self.process.pid)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def run_requests(uris: list[str], count: int, workers: int, on_done=None) -> float:
    """``count`` requests (cycling through ``uris``) through fal_client; returns the wall time."""
    import fal_client
    import fal_client.client

    # read at import from FAL_QUEUE_RUN_HOST; each table starts its own emulator on a new port
    fal_client.client.QUEUE_URL_FORMAT = f"https://{os.environ['FAL_QUEUE_RUN_HOST']}/"
    client = fal_client.SyncClient()
    done = [0]

    def one(index: int) -> None:
        handle = client.submit("fal-ai/sam-3/image", {"image_url": uris[index % len(uris)], "prompt": "object"})
        while not isinstance(handle.status(), fal_client.Completed):
            time.sleep(POLL_INTERVAL_S)
        result = handle.get()
        assert result["masks"], result
        done[0] += 1
        if on_done is not None:
            on_done(done[0])

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(one, i) for i in range(count)]:
            future.result()
    return time.monotonic() - started


def memory_table(count: int, extra: list[str]) -> tuple[list[str], dict]:
    uris = [data_uri(photo(2048, 1536, seed)) for seed in range(8)]
    emulator = Emulator(concurrency=4, extra=extra)
    rows, marks = [], {}
    try:
        idle_rss, idle_cpu = emulator.usage()
        checkpoints = {c for c in CHECKPOINTS if c <= count} | {count}

        def on_done(n: int) -> None:
            if n in checkpoints:
                marks[n] = emulator.usage()

        wall = run_requests(uris, count, workers=8, on_done=on_done)
        time.sleep(2)  # the emulator's sweep runs every second
        settled = emulator.usage()
    finally:
        emulator.stop()
    rows.append("| finished requests | emulator RSS (MiB) |")
    rows.append("|---|---|")
    rows.append(f"| 0 (started) | {idle_rss / 2**20:.0f} |")
    for n in sorted(marks):
        rows.append(f"| {n:,} | {marks[n][0] / 2**20:.0f} |")
    rows.append(f"| {count:,}, 2 s later | {settled[0] / 2**20:.0f} |")
    cpu_per_photo = (settled[1] - idle_cpu) / count
    return rows, {"wall": wall, "cpu_per_photo": cpu_per_photo, "count": count}


def speed_table(count: int, extra: list[str]) -> tuple[list[str], dict]:
    uris = [data_uri(photo(4000, 3000, seed)) for seed in range(4)]
    emulator = Emulator(concurrency=4, extra=extra)
    try:
        run_requests(uris, 4, workers=4)  # warm-up (imports, first allocations)
        _, cpu_before = emulator.usage()
        client_before = time.process_time()
        wall = run_requests(uris, count, workers=8)
        client_cpu = (time.process_time() - client_before) / count
        _, cpu_after = emulator.usage()
    finally:
        emulator.stop()
    per_second = count / wall
    emulator_cpu = (cpu_after - cpu_before) / count
    cores = len(os.sched_getaffinity(0))
    rows = [
        "| photos (12 MP, 4000x3000 JPEG) | wall time | photos per second | emulator CPU per photo "
        "| client CPU per photo | CPU-bound capacity of the cores |",
        "|---|---|---|---|---|---|",
        f"| {count} | {wall:.1f} s | {per_second:.1f} | {emulator_cpu * 1000:.0f} ms | {client_cpu * 1000:.0f} ms "
        f"| {cores / (emulator_cpu + client_cpu):.1f} photos/s ({cores} cores / CPU per photo, both processes) |",
    ]
    return rows, {"per_second": per_second}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1000, help="3 MP requests for the memory table")
    parser.add_argument("--large-photos", type=int, default=60, help="12 MP requests for the speed table")
    parser.add_argument("--emulator-arg", action="append", default=[], help="extra emulator CLI argument")
    parser.add_argument("--out", type=Path, help="update this document's emulator-memory section")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    memory_rows, memory = memory_table(args.photos, args.emulator_arg)
    speed_rows, _ = speed_table(args.large_photos, args.emulator_arg)
    text = "\n".join(
        [
            "## Emulator memory and CPU on large photos",
            "",
            f"- machine: {machine()}",
            f"- date: {today()}",
            f"- command: `{command_line()}`",
            f"- load average when it started: {load:.1f} (other work on the machine slows wall times, not CPU times)",
            "- the emulator as its own process (its CLI: concurrency 4, service time 0, default budgets), driven by "
            "the unmodified fal_client from 8 threads (submit, poll every 0.2 s, fetch the result), each photo a JPEG "
            "data URI; CPU is the emulator process's own (user + system)",
            "",
            f"{memory['count']:,} requests of 3 MP photos (2048x1536, 8 distinct photos), "
            f"{memory['wall']:.0f} s, emulator CPU {memory['cpu_per_photo'] * 1000:.0f} ms per photo:",
            "",
            *memory_rows,
            "",
            *speed_rows,
        ]
    )
    print(text)
    if args.out:
        update_section(args.out, SECTION, text)


if __name__ == "__main__":
    main()
