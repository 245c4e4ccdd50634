"""Sharded vs one batch task, on the production-shaped cluster of ``tests/cluster`` (Postgres, Redis, CeleryExecutor,
two triggerers, two Celery workers with 2 slots each), against the emulator in its own process.

The same listing of N images (default 2,000) runs as ``dags_examples/sam3_sharded_batch.py`` (4 shards mapped over
``shard_index`` + ``Sam3MergeManifestsOperator``) and as one ``Sam3BatchOperator`` task (``bench/throughput.py``'s
batch DAG), alternately, each run from trigger to the end of the DAG run (merge included). Throughput is images per
second of run wall time; the ratio is sharded ÷ single. Each run's emulator submissions are checked to equal N.

    .venv/bin/python bench/cluster_shards.py                          # 2,000 images, 2 rounds, print the table
    .venv/bin/python bench/cluster_shards.py --out docs/benchmarks.md # and update the "cluster-shards" section
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "deployment"))
sys.path.insert(0, str(REPO / "tests" / "cluster"))
sys.path.insert(0, str(REPO / "bench"))

from _doc import command_line, machine, today, update_section  # noqa: E402
from cluster import AirflowCluster  # noqa: E402
from throughput import BATCH_DAG, Emulator, run_dag, write_photos  # noqa: E402


def sharded_source() -> str:
    source = (REPO / "dags_examples" / "sam3_sharded_batch.py").read_text()
    marker = "@dag(\n    schedule=None,"
    assert marker in source, "sam3_sharded_batch: the @dag( header moved"
    return source.replace(marker, '@dag(\n    dag_id="bench_sharded",\n    schedule=None,')


def run(cluster: AirflowCluster, emulator: Emulator, kind: str, images: Path, out: Path, count: int) -> dict:
    emulator.reset()
    if kind == "sharded":
        conf = {"input_folder": str(images), "output_path": str(out), "prompt": "box"}
        result = run_dag(cluster, "bench_sharded.py", sharded_source(), "bench_sharded", timeout=1800, conf=conf)
        summary = cluster.xcom("bench_sharded", result["run_id"], "merge", default=None)
        hosts = cluster.hostnames("bench_sharded", result["run_id"], "segment")
    else:
        conf = {"images": str(images), "out": str(out)}
        result = run_dag(cluster, "bench_batch.py", BATCH_DAG, "bench_batch", timeout=1800, conf=conf)
        summary = cluster.xcom("bench_batch", result["run_id"], "segment", default=None)
        hosts = cluster.hostnames("bench_batch", result["run_id"], "segment")
    result["submissions"] = emulator.counters()["submissions"]["total"]
    result["succeeded"] = (summary or {}).get("succeeded")
    result["workers"] = sorted({h for h in hosts.values() if h})
    if result["state"] == "success":
        assert result["submissions"] == count == result["succeeded"], result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="each round runs both, in alternating order")
    parser.add_argument("--service-time", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", type=Path, help="update the cluster-shards section of this markdown file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sam3-bench-cluster-"))
    images = write_photos(workdir / "images", args.images)[0].parent
    warm = write_photos(workdir / "warm-up", 16)[0].parent
    emulator = Emulator(workdir, args.service_time, args.concurrency)
    cluster = AirflowCluster(extra_env=emulator.env, base_dir=workdir)
    results: dict[str, list[dict]] = {"sharded": [], "single": []}
    try:
        cluster.start()
        for kind in results:  # warm-up: DAGs parsed, worker processes started, as in production
            run(cluster, emulator, kind, warm, workdir / f"out-warm-{kind}", 16)
        for number in range(args.rounds):
            order = ["sharded", "single"] if number % 2 == 0 else ["single", "sharded"]
            for kind in order:
                results[kind].append(
                    run(cluster, emulator, kind, images, workdir / f"out-{kind}-{number}", args.images)
                )
                print(kind, json.dumps(results[kind][-1]), flush=True)
    finally:
        cluster.stop()
        emulator.stop()

    table = render(results, args)
    print(table)
    if args.out:
        update_section(args.out, "cluster-shards", table)


def render(results: dict[str, list[dict]], args: argparse.Namespace) -> str:
    ideal = args.images / args.concurrency * args.service_time
    seconds = {kind: statistics.median(r["seconds"] for r in runs) for kind, runs in results.items()}
    names = {
        "sharded": "`sam3_sharded_batch`: 4 shards (`shard_count=4`, mapped) + merge",
        "single": "one `Sam3BatchOperator` task",
    }
    lines = [
        "## Sharded batch vs one batch task on a Celery cluster",
        "",
        f"Machine: {machine()}. Measured {today()} with `{command_line()}`.",
        "",
        f"{args.images} images (one folder), emulator service time {args.service_time} s, account concurrency "
        f"{args.concurrency} (ideal {ideal:.1f} s). The cluster of `tests/cluster` on the same 2 cores: Postgres, "
        "Redis, CeleryExecutor, two triggerers, two Celery workers with 2 slots each; the emulator in its own "
        f"process. Run wall time from trigger to the end of the DAG run (merge included), median of {args.rounds} "
        "runs each, alternating which goes first; every run paid each image once (emulator submissions = images).",
        "",
        "| path | runs (s) | median (s) | images/s | workers used | submissions |",
        "|---|---|---|---|---|---|",
    ]
    for kind, runs in results.items():
        each = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        lines.append(
            f"| {names[kind]} | {each} | {seconds[kind]:.1f} | "
            f"{args.images / seconds[kind]:.1f} | {', '.join(runs[-1]['workers'])} | "
            f"{', '.join(str(r['submissions']) for r in runs)} |"
        )
    lines += [
        "",
        f"**Throughput ratio, sharded ÷ single: {seconds['single'] / seconds['sharded']:.2f}x.**",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
