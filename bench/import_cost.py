"""DAG parse cost: how long importing the provider takes on top of ``import airflow.sdk``.

The DAG processor re-imports every DAG file, so the provider's import time is paid again and again. This script
starts fresh interpreters (one per sample, alternating the two kinds):

* **baseline**: ``import airflow.sdk``;
* **DAG file**: ``import airflow.sdk``, then what a DAG file using the provider imports:
  ``SegmentImageOperator`` (``operators.sam3``), the batch operator module ``operators.batch`` (when it exists)
  and ``FalRequestSensor`` (``sensors.fal``).

Two measures of the added cost, both medians over ``--reps`` processes:

1. *in-process*: ``time.perf_counter()`` around the provider imports inside the DAG-file process (the precise one);
2. *wall clock*: median wall time of the DAG-file processes minus the median of the baseline processes (a cross
   check; noisy, since ``import airflow.sdk`` alone takes about two seconds).

It also asserts that the DAG-file imports bring in none of the heavy libraries (fal_client, httpx, PIL, numpy),
prints the provider's share of the time by module (``python -X importtime``), and measures two bytecode
conditions: *cached* (``.pyc`` files present, as in an installed wheel; a private ``PYTHONPYCACHEPREFIX`` keeps
them out of the checkout) and *source* (``PYTHONDONTWRITEBYTECODE=1`` and no ``__pycache__`` in the checkout, as
in this repository's editable install and CI: the provider's modules are compiled on every import).

    .venv/bin/python bench/import_cost.py                      # print the tables
    .venv/bin/python bench/import_cost.py --out docs/benchmarks.md   # and update the import-cost section
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _doc import REPO, command_line, machine, today, update_section  # noqa: E402

SECTION = "import-cost"
TARGET_MS = 30.0
HEAVY = ("fal_client", "httpx", "PIL", "numpy")

DAG_IMPORTS = [
    "from airflow_provider_sam3.operators.sam3 import SegmentImageOperator",
    "from airflow_provider_sam3.sensors.fal import FalRequestSensor",
]
BATCH_MODULE = "airflow_provider_sam3.operators.batch"
EXTRA_IMPORT = "from airflow_provider_sam3.models.results import SegmentationResult"
"""Measured separately: the README's quick-start DAG also imports the typed result reader at module level."""

CHILD = r"""
import json, sys, time
heavy = {heavy!r}
present = lambda: sorted(n for n in heavy if n in sys.modules)
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
t1, c1 = time.perf_counter(), time.process_time()
after_sdk = present()
if {dag}:
{imports}
t2, c2 = time.perf_counter(), time.process_time()
after_dag = present()
if {dag}:
    {extra}
t3, c3 = time.perf_counter(), time.process_time()
after_extra = present()
origin = getattr(sys.modules.get("airflow_provider_sam3"), "__file__", None)
print("BENCH" + json.dumps(dict(sdk=t1 - t0, dag=t2 - t1, extra=t3 - t2, dag_cpu=c2 - c1, extra_cpu=c3 - c2,
                                after_sdk=after_sdk,
                                after_dag=after_dag, after_extra=after_extra, origin=origin)))
"""


def dag_imports(checkout: Path) -> list[str]:
    """The DAG file's imports; the batch operator module is included when it exists in the checkout."""
    imports = list(DAG_IMPORTS)
    batch = checkout / Path(*BATCH_MODULE.split(".")).with_suffix(".py")
    if batch.exists():
        imports.insert(1, f"import {BATCH_MODULE}")
    return imports


def child_code(dag: bool, imports: list[str], extra: bool = True) -> str:
    return CHILD.format(
        heavy=HEAVY,
        dag=dag,
        imports="\n".join("    " + line for line in imports),
        extra=EXTRA_IMPORT if extra else "pass",
    )


def environment(condition: str, pycache: Path, checkout: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(checkout), env.get("PYTHONPATH")]))
    env["SAM3_BENCH_CHECKOUT"] = str(checkout)
    env.setdefault("AIRFLOW_HOME", str(pycache.parent / "airflow-home"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    env.pop("PYTHONPYCACHEPREFIX", None)
    if condition == "cached":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run_child(code: str, env: dict[str, str], *flags: str) -> tuple[float, dict, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *flags, "-c", code],
        env=env,
        cwd=env["SAM3_BENCH_CHECKOUT"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("BENCH"))
    return wall, json.loads(line[len("BENCH") :]), done.stderr


def importtime_breakdown(code: str, env: dict[str, str], runs: int) -> list[tuple[str, float]]:
    """Median self time (ms) of each module first imported by the DAG-file imports, from ``-X importtime``."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        _, _, stderr = run_child(code, env, "-X", "importtime")
        rows = []
        for line in stderr.splitlines():
            if not line.startswith("import time:"):
                continue
            self_us, _cumulative, name = line[len("import time:") :].split("|")
            if self_us.strip().isdigit():
                rows.append((int(self_us), name))
        # Lines are printed when an import finishes: everything after the top-level "airflow.sdk" line (one
        # leading space) was first imported by the DAG-file imports.
        start = max(i for i, (_, name) in enumerate(rows) if name == " airflow.sdk")
        for self_us, name in rows[start + 1 :]:
            samples.setdefault(name.strip(), []).append(self_us / 1000)
    medians = {name: statistics.median(values + [0.0] * (runs - len(values))) for name, values in samples.items()}
    return sorted(medians.items(), key=lambda item: -item[1])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def measure(condition: str, reps: int, warmup: int, imports: list[str], pycache: Path, checkout: Path) -> dict:
    env = environment(condition, pycache, checkout)
    base_code, dag_code = child_code(False, imports), child_code(True, imports)
    for _ in range(warmup):  # first runs write AIRFLOW_HOME's config and (cached) the bytecode
        run_child(base_code, env)
        run_child(dag_code, env)
    base_walls, dag_walls, added, extra, sdk, added_cpu, extra_cpu = [], [], [], [], [], [], []
    heavy_after_sdk: set[str] = set()
    heavy_added: set[str] = set()
    heavy_extra: set[str] = set()
    for _ in range(reps):
        wall, result, _ = run_child(base_code, env)
        base_walls.append(wall)
        wall, result, _ = run_child(dag_code, env)
        assert Path(result["origin"]).is_relative_to(checkout), f"imported {result['origin']}, not from {checkout}"
        dag_walls.append(wall)
        added.append(result["dag"])
        extra.append(result["extra"])
        added_cpu.append(result["dag_cpu"])
        extra_cpu.append(result["extra_cpu"])
        sdk.append(result["sdk"])
        heavy_after_sdk |= set(result["after_sdk"])
        heavy_added |= set(result["after_dag"]) - set(result["after_sdk"])
        heavy_extra |= set(result["after_extra"]) - set(result["after_dag"])
    return {
        "condition": condition,
        "reps": reps,
        "sdk": statistics.median(sdk),
        "added": statistics.median(added),
        "added_q": statistics.quantiles(added, n=4) if reps >= 2 else [added[0]] * 3,
        "added_cpu": statistics.median(added_cpu),
        "added_cpu_q": statistics.quantiles(added_cpu, n=4) if reps >= 2 else [added_cpu[0]] * 3,
        "extra_cpu": statistics.median(extra_cpu),
        "wall_base": statistics.median(base_walls),
        "wall_base_q": statistics.quantiles(base_walls, n=4) if reps >= 2 else [base_walls[0]] * 3,
        "wall_dag": statistics.median(dag_walls),
        "extra": statistics.median(extra),
        "heavy_after_sdk": sorted(heavy_after_sdk),
        "heavy_added": sorted(heavy_added),
        "heavy_extra": sorted(heavy_extra),
        "env": env,
        "dag_code": dag_code,
    }


def report(
    results: list[dict], breakdown: list[tuple[str, float]], imports: list[str], reps: int, checkout: Path
) -> str:
    condition = results[0]["condition"]
    batch = any(BATCH_MODULE in line for line in imports)
    out = [
        "## DAG parse cost: importing the provider",
        "",
        f"- machine: {machine()}",
        f"- date: {today()}",
        f"- command: `{command_line()}`",
        *([] if checkout == REPO else [f"- provider measured: the checkout in `{checkout}`"]),
        f"- samples: {reps} fresh interpreters of each kind per condition (alternating), after warm-up runs",
        "- DAG-file imports, after `import airflow.sdk`: "
        + "; ".join(f"`{line}`" for line in imports)
        + ("" if batch else f" (`{BATCH_MODULE}` does not exist in this checkout yet, so it is not imported)"),
        "",
        "| bytecode | `import airflow.sdk` alone (wall) | **added: CPU time** (median; interquartile range) "
        f"| added: wall time (median; IQR) | target ≤ {TARGET_MS:.0f} ms (CPU / wall) "
        f"| + `{EXTRA_IMPORT.split(' import ')[1]}` (README quick start; CPU / wall) |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "cached": "cached `.pyc` (as installed from a wheel)",
        "source": "compiled from source (`PYTHONDONTWRITEBYTECODE=1`, editable checkout)",
    }

    def verdict(seconds: float) -> str:
        return "met" if seconds * 1000 <= TARGET_MS else "**missed**"

    for r in results:
        (q1, _, q3), (c1, _, c3) = r["added_q"], r["added_cpu_q"]
        out.append(
            f"| {labels[r['condition']]} | {ms(r['sdk'])} ms | **{ms(r['added_cpu'])} ms** ({ms(c1)}–{ms(c3)}) "
            f"| {ms(r['added'])} ms ({ms(q1)}–{ms(q3)}) | {verdict(r['added_cpu'])} / {verdict(r['added'])} "
            f"| +{ms(r['extra_cpu'])} / +{ms(r['extra'])} ms |"
        )
    out += [
        "",
        "Added time is measured inside each DAG-file process around the provider imports: CPU time "
        "(`time.process_time()`, what the imports cost; less sensitive than wall time to other work on a shared "
        "machine) and wall "
        "time (`time.perf_counter()`; on an idle machine the two agree, on a busy one wall time adds the waits "
        "for a core). Cross-check by whole-process wall clock, median DAG-file process − median baseline process: "
        + "; ".join(
            f"{r['condition']} {ms(r['wall_dag'] - r['wall_base'])} ms (baseline interquartile range "
            f"{ms(r['wall_base_q'][2] - r['wall_base_q'][0])} ms)"
            for r in results
        )
        + ". Starting Airflow varies by far more than the provider costs, so the wall clock cannot resolve it "
        "with this many samples.",
    ]
    first = results[0]
    out += [
        "",
        "Heavy libraries: "
        + (
            f"`import airflow.sdk` itself already imports {', '.join(f'`{h}`' for h in first['heavy_after_sdk'])}; "
            if first["heavy_after_sdk"]
            else ""
        )
        + "the DAG-file imports add "
        + (", ".join(f"`{h}`" for h in first["heavy_added"]) or "none of " + ", ".join(f"`{h}`" for h in HEAVY))
        + " (asserted), and the result reader adds "
        + (", ".join(f"`{h}`" for h in first["heavy_extra"]) or "none")
        + ".",
        "",
        f"Where the added time goes ({condition} condition; `python -X importtime`, median "
        "self time per module over a few runs; importtime's own overhead inflates these):",
        "",
        "| module (first imported by the DAG-file imports) | self time |",
        "|---|---|",
    ]
    rows = breakdown
    provider = sum(t for n, t in rows if n.startswith("airflow_provider_sam3"))
    other = sum(t for n, t in rows if not n.startswith("airflow_provider_sam3"))
    for name, t in rows[:12]:
        out.append(f"| `{name}` | {t:.1f} ms |")
    out.append(f"| *all `airflow_provider_sam3.*` modules* | *{provider:.1f} ms* |")
    out.append(f"| *all other modules (Airflow's own, first needed by the provider)* | *{other:.1f} ms* |")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=21, help="fresh interpreters of each kind per condition")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--importtime-runs", type=int, default=5)
    parser.add_argument("--conditions", default="cached,source", help="cached, source or both (comma-separated)")
    parser.add_argument("--out", type=Path, help="update this document's import-cost section (docs/benchmarks.md)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=REPO,
        help="measure the airflow_provider_sam3 package of this directory (default: this repository), e.g. a "
        "`git worktree` of an older commit, to compare before and after a change",
    )
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    assert (checkout / "airflow_provider_sam3" / "__init__.py").exists(), f"no provider package in {checkout}"

    imports = dag_imports(checkout)
    results = []
    with tempfile.TemporaryDirectory(prefix="sam3-import-bench-") as tmp:
        pycache = Path(tmp) / "pyc"
        for condition in args.conditions.split(","):
            if condition == "source" and any((checkout / "airflow_provider_sam3").rglob("__pycache__/*.pyc")):
                print("note: the checkout has __pycache__ files, so 'source' is partly cached", file=sys.stderr)
            result = measure(condition, args.reps, args.warmup, imports, pycache, checkout)
            print(
                f"{condition}: added {ms(result['added_cpu'])} ms CPU, {ms(result['added'])} ms wall "
                f"(medians of {args.reps})",
                file=sys.stderr,
            )
            results.append(result)
        first = results[0]
        breakdown = importtime_breakdown(child_code(True, imports, extra=False), first["env"], args.importtime_runs)
        text = report(results, breakdown, imports, args.reps, checkout)
    print(text)
    for r in results:
        assert not r["heavy_added"], f"DAG-file imports pulled in heavy libraries: {r['heavy_added']}"
    if args.out:
        update_section(args.out, SECTION, text)
        print(f"updated the {SECTION!r} section of {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
