"""CPU per image of the batch engine vs a fair hand-written fal-client loop vs the bare subscribe pool, one process,
side by side in one run, against the emulator in its own process (so its CPU is not counted).

- **batch engine**: ``BatchEngine`` as ``Sam3BatchOperator`` runs it on a worker (not deferring), with a task state
  store that serialises every write to JSON as Airflow's does, then the manifest;
- **fair peer**: what a careful user writes by hand: an async fal-client loop at the same concurrency that stores
  what the batch stores: each mask file and the result JSON per image;
- **bare pool**: ``fal_client.subscribe`` in a thread pool, storing nothing (the lower bound).

Airflow's scheduler, triggerer and task supervisor are not in the picture: this isolates the provider's own cost
per image (``bench/throughput.py`` measures the whole run in a real deployment).

    .venv/bin/python bench/batch_cpu.py --images 2000 --service-time 0.05 --concurrency 32
    .venv/bin/python bench/batch_cpu.py --only batch --profile /tmp/batch.prof   # then: python -m pstats
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from engine_runs import LOG, SHARED, PlainStore, planned  # noqa: E402
from throughput import Emulator, run_peer, write_photos  # noqa: E402

ENDPOINT = "fal-ai/sam-3/image"


class SlowStore(PlainStore):
    """A task state store whose every write blocks for ``latency`` seconds, as a round trip from the task to its
    supervisor and Airflow's API server does (the provider writes from its event loop, synchronously)."""

    latency = 0.0

    def set(self, key, value):
        time.sleep(self.latency)
        super().set(key, value)


def run_batch(paths: list[Path], out: Path, concurrency: int) -> dict:
    """The engine's stays until every image is final, then the manifest, as the operator does on a worker."""
    from airflow_provider_sam3.batch.engine import BatchEngine
    from airflow_provider_sam3.batch.manifest import write_manifest
    from airflow_provider_sam3.batch.options import BatchOptions
    from airflow_provider_sam3.hooks.fal import FalHook

    endpoint, state = planned(paths)
    store = SlowStore()
    options = BatchOptions(submit_concurrency=8, shared_arguments=SHARED, poll_interval=0.2)

    async def stays() -> None:
        hook = FalHook()
        try:
            engine = BatchEngine(hook, endpoint, state, out, store, options, LOG)
            while await engine.run(None) is not None:
                pass
        finally:
            await hook.aclose()

    asyncio.run(stays())
    write_manifest(out, state.ordered())
    counts = state.counts()
    return {"succeeded": counts.get("done", 0), "state_store_writes": store.writes}


def run_pool(paths: list[Path], out: Path, concurrency: int) -> dict:
    """``fal_client.subscribe`` in a thread pool, storing nothing."""
    import fal_client

    client = fal_client.SyncClient()

    def one(path: Path) -> dict:
        image_url = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        return client.subscribe(ENDPOINT, arguments={"image_url": image_url, **SHARED})

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, paths))
    return {"succeeded": sum(1 for result in results if result.get("masks"))}


PATHS = {"batch": run_batch, "peer": run_peer, "pool": run_pool}
NAMES = {
    "batch": "batch engine (Sam3BatchOperator's worker path)",
    "peer": "fair peer: async fal-client loop storing masks + result JSON",
    "pool": "bare pool: fal_client.subscribe in threads, storing nothing",
}


def measure(name: str, paths: list[Path], out: Path, concurrency: int, profile: str | None) -> dict:
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    result = PATHS[name](paths, out, concurrency)
    if profiler:
        profiler.disable()
        profiler.dump_stats(profile)
    result["cpu_seconds"] = time.process_time() - cpu
    result["wall_seconds"] = time.perf_counter() - wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--service-time", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--only", choices=sorted(PATHS), action="append")
    parser.add_argument("--profile", help="write a cProfile of the (single) path measured here")
    parser.add_argument(
        "--store-latency-ms", type=float, default=0.0, help="block each task state store write this long"
    )
    args = parser.parse_args()
    SlowStore.latency = args.store_latency_ms / 1000
    which = args.only or ["batch", "peer", "pool"]
    workdir = Path(tempfile.mkdtemp(prefix="sam3-batch-cpu-"))
    paths = write_photos(workdir / "images", args.images)
    emulator = Emulator(workdir, args.service_time, args.concurrency)
    os.environ.update(emulator.env)
    try:
        import fal_client.client as fal_module

        fal_module.QUEUE_URL_FORMAT = f"https://{emulator.env['FAL_QUEUE_RUN_HOST']}/"
        measure(which[0], write_photos(workdir / "warm-up", 16), workdir / "out-warm-up", args.concurrency, None)
        results = {}
        for name in which:
            emulator.reset()
            results[name] = measure(name, paths, workdir / f"out-{name}", args.concurrency, args.profile)
            results[name]["submissions"] = emulator.counters()["submissions"]["total"]
    finally:
        emulator.stop()
    print(render(results, args))


def render(results: dict, args: argparse.Namespace) -> str:
    import airflow_provider_sam3

    lines = [
        f"{args.images} images, emulator service time {args.service_time} s, account concurrency {args.concurrency}"
        f" (python {sys.version.split()[0]}, {os.cpu_count()} cores; provider from "
        f"`{Path(airflow_provider_sam3.__file__).parent.parent}`)",
        "",
        "| path | succeeded | wall (s) | CPU (s) | CPU per image (ms) | x fair peer (CPU) | submissions |",
        "|---|---|---|---|---|---|---|",
    ]
    peer = results.get("peer", {}).get("cpu_seconds")
    for name, result in results.items():
        per_image = result["cpu_seconds"] / args.images * 1000
        ratio = f"{result['cpu_seconds'] / peer:.2f}" if peer else "-"
        lines.append(
            f"| {NAMES[name]} | {result['succeeded']} | {result['wall_seconds']:.1f} | {result['cpu_seconds']:.1f} | "
            f"{per_image:.2f} | {ratio} | {result['submissions']} |"
        )
    if "batch" in results:
        lines.append(
            f"\nTask state store writes by the batch: {results['batch']['state_store_writes']}, each blocking "
            f"{args.store_latency_ms:g} ms."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
