"""The result cache on the batch: the same 10,000 distinct images run three times by one ``Sam3BatchOperator``
task (``dag.test()`` in a fresh interpreter, the emulator in its own process), side by side in one run:

- ``no cache``: the batch as it runs without ``result_cache`` (the reference);
- ``first run``: with an empty cache: every image is paid for, and kept in the cache;
- ``second run``: the same folder again: every image is answered from the cache (nothing sent).

Each row: submissions, what fal bills, the batch's own time (``wall_seconds`` of its summary, from its state's
start to its manifest), the whole process's wall time, and its CPU per image (user + system of the process, which
includes Airflow's start-up: a 1-image run measures that and it is shown for reference).

    .venv/bin/python bench/result_cache.py                          # print the table
    .venv/bin/python bench/result_cache.py --out docs/benchmarks.md # and update its section
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))

from _doc import command_line, machine, today, update_section  # noqa: E402
from batch_scale import Emulator, airflow_env, migrate, run_batch  # noqa: E402


def measure(work: Path, count: int, service_time: float, concurrency: int) -> str:
    from photos import write_photos

    folder = work / "photos"
    write_photos(folder, count, seed=23)  # distinct bytes: each image its own key
    one = work / "one"
    write_photos(one, 1, seed=29)
    emulator = Emulator(work, service_time=service_time, concurrency=concurrency)
    home = work / "airflow-home"
    rows = []
    try:
        migrate(home)
        env = airflow_env(home, emulator)
        operator = {"deferrable": False, "submit_concurrency": 32}
        start_up = run_batch(env, str(one), work / "out-startup", **operator)
        cache = str(work / "cache")
        for name, extra in (
            ("no cache", {}),
            ("first run (empty cache)", {"result_cache": cache}),
            ("second run (every image cached)", {"result_cache": cache}),
        ):
            result = run_batch(env, str(folder), work / f"out-{len(rows)}", **operator, **extra)
            summary = result["summary"]
            assert summary and summary["succeeded"] == count, summary
            rows.append((name, result, summary))
            print(name, summary["submissions"], summary["wall_seconds"], result["cpu_s"], flush=True)
    finally:
        emulator.stop()
    lines = [
        "| run | submissions | fal bills | cache hits | batch's own time | process wall | process CPU "
        "| CPU per image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result, summary in rows:
        lines.append(
            f"| {name} | {summary['submissions']:,} | ${summary['cost_usd']:.2f} | {summary['cache_hits']:,} "
            f"| {summary['wall_seconds']:.1f} s | {result['wall_s']:.1f} s | {result['cpu_s']:.1f} s "
            f"| {1000 * result['cpu_s'] / count:.2f} ms |"
        )
    first, second = rows[1][2], rows[2][2]
    lines += [
        "",
        f"A 1-image run of the same process takes {start_up['cpu_s']:.1f} s of CPU and {start_up['wall_s']:.1f} s "
        "(Airflow's start-up, in every row). Second run vs first: "
        f"{first['wall_seconds'] / max(second['wall_seconds'], 1e-9):.1f}x less batch time; a hit costs "
        f"{1000 * (rows[2][1]['cpu_s'] - start_up['cpu_s']) / count:.2f} ms of CPU (start-up taken out: read and "
        "hash the image, check the entry's files' sha256, copy them into the run's folder, write its manifest row).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--service-time", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sam3-bench-cache-") as work:
        table = measure(Path(work), args.images, args.service_time, args.concurrency)
    body = (
        f"## Result cache: first run vs second run\n\n{today()}; {machine()}. {args.images:,} distinct small PNGs; "
        f"emulator service time {args.service_time} s, concurrency {args.concurrency}; the batch on the worker "
        f"(`deferrable=False`, `submit_concurrency=32`).\n\n`{command_line()}`\n\n{table}"
    )
    print(body)
    if args.out:
        update_section(args.out, "result-cache", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
