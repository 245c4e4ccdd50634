"""Waiting cost of requests in flight: ONE ``FalBatchTrigger`` for N requests vs N ``FalRequestTrigger`` (one per
request, what one deferrable task per image gives), side by side in one run, against the bundled fal emulator.

    .venv/bin/python bench/waiting_cost.py                            # N = 1,000 and 10,000; print the tables
    .venv/bin/python bench/waiting_cost.py --out docs/benchmarks.md   # and update the "waiting-cost" section

Phase 1 (waiting): an emulator with a service time of an hour and concurrency 1 (so every request stays queued),
N requests submitted with ``FalHook.asubmit``. For each path and N, a FRESH interpreter imports the trigger class,
warms up (one trigger of the same kind polls once: fal-client, httpx, TLS and pydantic first-use costs are paid
before the baseline, as in a triggerer that is already running), takes its RSS, then rebuilds the triggers from the
kwargs the operators' triggers serialize (as the triggerer does from the database) and runs every ``run()`` in one
asyncio loop for a fixed window. Measured: RSS growth, the process's CPU time and the emulator's HTTP calls
(``/_emulator/counters``) during the window.

Phase 2 (to completion): a short service time; N requests are held behind one long "plug" request while they are
submitted, then released at once; both paths run until every request has finished. Measured: status calls per
completed request and the time until the last event.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = "fal-ai/sam-3/image"
AIRFLOW_BOOKKEEPING_KB = 110
"""Triggerer memory per trigger that is Airflow's own (``../shared/reference/airflow-3.3-notes.md``, measured in a
real triggerer); not measured by this script, which runs the triggers without Airflow's triggerer around them."""
TARGET_KB = 5.0
PATHS = {"batch": "one FalBatchTrigger for all N", "single": "N FalRequestTrigger (one per request)"}


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))


def rss_kb(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU of another process (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------------- the child


def child(spec_path: Path) -> None:
    """One measured path in this fresh interpreter; writes its figures as JSON to ``spec["result"]``."""
    import asyncio

    spec = json.loads(spec_path.read_text())
    _raise_fd_limit()
    result = asyncio.run(_child_main(spec))
    Path(spec["result"]).write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # the triggers' connections die with the process; a clean shutdown of 10,000 is not measured


async def _child_main(spec: dict) -> dict:
    import asyncio
    import gc
    import importlib

    import httpx

    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.reference import RequestReference

    host, cert, key = os.environ["FAL_QUEUE_RUN_HOST"], os.environ["SSL_CERT_FILE"], os.environ["FAL_KEY"]
    admin = httpx.Client(base_url=f"https://{host}", verify=cert, timeout=120)
    emulator_pid = spec["emulator_pid"]

    # Before the baseline: the class to measure, and the probe's index of request ids (held by both paths alike).
    ids = json.loads(Path(spec["ids"]).read_text())
    index = {rid: i for i, rid in enumerate(ids)}
    seen = bytearray(len(ids))
    probe = [0, 0]  # status calls answered, distinct requests answered at least once

    original = FalHook.astatus

    async def probed(self, ref, *, with_logs=False):  # noqa: ANN001, ANN202
        status = await original(self, ref, with_logs=with_logs)
        probe[0] += 1
        i = index.get(ref.request_id)
        if i is not None and not seen[i]:
            seen[i] = 1
            probe[1] += 1
        return status

    FalHook.astatus = probed
    module, _, name = spec["classpath"].rpartition(".")
    trigger_class = getattr(importlib.import_module(module), name)

    # Warm-up: one trigger of the same kind until it has polled once (first-use costs are paid once per triggerer).
    warm_kwargs = spec["warm_up_kwargs"]
    warm = asyncio.ensure_future(_drive(trigger_class(**warm_kwargs), []))
    while probe[0] == 0 and not warm.done():
        await asyncio.sleep(0.05)
    warm.cancel()
    await asyncio.gather(warm, return_exceptions=True)
    probe[0] = probe[1] = 0
    seen[:] = bytes(len(seen))
    hook = FalHook()
    await hook.astatus(RequestReference.from_dict(spec["warm_up_reference"]))
    await hook.aclose()
    probe[0] = probe[1] = 0
    seen[:] = bytes(len(seen))
    del hook, warm

    gc.collect()
    await asyncio.sleep(1.0)
    gc.collect()
    rss_before = rss_kb()
    counters_before = admin.get("/_emulator/counters").json()
    emulator_cpu_before = cpu_seconds_of(emulator_pid)
    wall_start, cpu_start = time.monotonic(), own_cpu_seconds()

    # What the triggerer does: kwargs from storage -> one trigger object each.
    kwargs_list = json.loads(Path(spec["kwargs"]).read_text())
    triggers = [trigger_class(**kwargs) for kwargs in kwargs_list]
    del kwargs_list
    built_seconds = time.monotonic() - wall_start

    if spec.get("release"):  # phase 2: let the held requests run now that the triggers exist
        admin.post("/_emulator/config", json=spec["release"]["config"]).raise_for_status()
        admin.put(spec["release"]["plug_cancel_url"], headers={"Authorization": f"Key {key}"})

    events: list[dict] = []
    tasks = [asyncio.ensure_future(_drive(trigger, events)) for trigger in triggers]
    n_triggers, n_requests = len(triggers), spec["n"]
    del triggers
    ready = None
    rss_peak, samples, aborted, last_event_at = 0, [], None, None
    limit_kb = spec["max_rss_gb"] * 1024 * 1024
    while True:
        await asyncio.sleep(0.5)
        now = time.monotonic() - wall_start
        rss = rss_kb()
        rss_peak = max(rss_peak, rss)
        if int(now) % 5 == 0 and (not samples or samples[-1][0] != int(now)):
            samples.append((int(now), rss - rss_before, probe[1], probe[0]))
        finished = sum(1 for task in tasks if task.done())
        polled = (probe[1] if n_triggers > 1 else min(1, probe[0])) + finished
        if ready is None and polled >= n_triggers:
            ready = {"seconds": now, "cpu": own_cpu_seconds() - cpu_start, "rss": rss, "calls": probe[0]}
        if spec["mode"] == "complete" and finished == len(tasks):
            break
        if spec["mode"] == "wait":
            # The window is extended (up to max_window) until every trigger has polled once, then runs half a
            # window more, so the steady state is seen even when starting the triggers takes long.
            if ready is not None:
                end_at = min(spec["max_window"], max(spec["window"], ready["seconds"] + spec["window"] / 2))
            else:
                end_at = spec["max_window"] if now >= spec["window"] / 2 else spec["window"]
        else:
            end_at = spec["window"]
        if now >= end_at:
            if spec["mode"] == "complete":
                aborted = f"not complete after {spec['window']} s"
            break
        if rss > limit_kb:
            aborted = f"stopped early: RSS passed {spec['max_rss_gb']} GB"
            break

    wall = time.monotonic() - wall_start
    cpu = own_cpu_seconds() - cpu_start
    rss_end = rss_kb()
    emulator_cpu = cpu_seconds_of(emulator_pid) - emulator_cpu_before
    counters_after = admin.get("/_emulator/counters").json()
    if events:
        last_event_at = max(payload["_at"] for payload in events) - wall_start
    completed = 0
    for payload in events:
        if spec["path"] == "batch":
            completed += sum(1 for value in payload.get("finished", {}).values() if not value[0])
        elif payload.get("status") == "completed" and not payload.get("error"):
            completed += 1
    statuses = sorted({payload.get("status") for payload in events})
    errors = [repr(task.exception()) for task in tasks if task.done() and not task.cancelled() and task.exception()]
    return {
        "path": spec["path"],
        "mode": spec["mode"],
        "n": n_requests,
        "triggers": n_triggers,
        "rss_before_kb": rss_before,
        "rss_end_kb": rss_end,
        "rss_peak_kb": rss_peak,
        "rss_ready_kb": ready and ready["rss"],
        "ready_seconds": ready and ready["seconds"],
        "cpu_ready": ready and ready["cpu"],
        "polled_distinct": probe[1],
        "probe_calls": probe[0],
        "built_seconds": built_seconds,
        "wall": wall,
        "cpu": cpu,
        "emulator_cpu": emulator_cpu,
        "status_calls": counters_after["status_calls"] - counters_before["status_calls"],
        "result_calls": counters_after["result_calls"] - counters_before["result_calls"],
        "cancels": counters_after["cancels"]["total"] - counters_before["cancels"]["total"],
        "events": len(events),
        "event_statuses": statuses,
        "completed": completed,
        "last_event_seconds": last_event_at,
        "aborted": aborted,
        "samples": samples,
        "trigger_errors": len(errors),
        "first_errors": errors[:3],
        "error_events": [payload.get("message") for payload in events if payload.get("status") == "error"][:3],
        "error_event_count": sum(1 for payload in events if payload.get("status") == "error"),
    }


async def _drive(trigger, events: list) -> None:  # noqa: ANN001
    """What the triggerer does with a trigger: run it and take its event (these triggers fire once)."""
    async for event in trigger.run():
        events.append({**event.payload, "_at": time.monotonic()})
        return


# ---------------------------------------------------------------------------------------------------- the parent


def _emulator(workdir: Path, service_time: float, concurrency: int):  # noqa: ANN202
    sys.path.insert(0, str(REPO / "bench"))
    from throughput import Emulator

    workdir.mkdir(parents=True, exist_ok=True)
    return Emulator(workdir, service_time, concurrency)


def _admin(emulator, method: str, path: str, **kwargs) -> dict:  # noqa: ANN001
    import httpx

    response = httpx.request(
        method,
        f"https://{emulator.env['FAL_QUEUE_RUN_HOST']}{path}",
        verify=emulator.env["SSL_CERT_FILE"],
        timeout=60,
        **kwargs,
    )
    response.raise_for_status()
    return response.json()


def _image_data_uri() -> str:
    from PIL import Image, ImageDraw

    from airflow_provider_sam3.media.inputs import prepare_image

    image = Image.new("RGB", (64, 48), (15, 20, 30))
    ImageDraw.Draw(image).rectangle([10, 8, 40, 30], fill=(230, 200, 60))
    return prepare_image(image).url


def submit(count: int, concurrency: int) -> list[dict]:
    """``count`` requests through the provider's FalHook.asubmit, ``concurrency`` at a time, in submission order."""
    import asyncio

    from airflow_provider_sam3.hooks.fal import FalHook

    arguments = {"image_url": _image_data_uri(), "prompt": "box"}

    async def run() -> list[dict]:
        hook = FalHook()
        gate = asyncio.Semaphore(concurrency)
        done = [0]

        async def one() -> dict:
            async with gate:
                ref = await hook.asubmit(ENDPOINT, arguments)
            done[0] += 1
            if done[0] % 2000 == 0:
                print(f"  submitted {done[0]} of {count}", file=sys.stderr, flush=True)
            return ref.to_dict()

        try:
            return await asyncio.gather(*(one() for _ in range(count)))
        finally:
            await hook.aclose()

    refs = asyncio.run(run())
    return sorted(refs, key=lambda ref: ref["submitted_at"])


def batch_kwargs(refs: list[dict], fire_at: int | None, deadline: float) -> dict:
    """The FalBatchTrigger the batch operator defers on, serialized as the triggerer stores it."""
    from airflow_provider_sam3.batch.polling import url_templates_of
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.triggers.batch import FalBatchTrigger

    templates = url_templates_of(RequestReference.from_dict(refs[0]))
    explicit = {}
    for ref in refs:
        if url_templates_of(RequestReference.from_dict(ref)) != templates:
            explicit[ref["request_id"]] = {k: ref[k] for k in ("status_url", "response_url", "cancel_url")}
    trigger = FalBatchTrigger(
        endpoint_id=ENDPOINT,
        url_templates=templates,
        request_ids=[ref["request_id"] for ref in refs],
        deadline=deadline,
        poll_interval=None,
        max_poll_interval=None,
        fire_at=fire_at,
        progress={"total": len(refs), "done": 0, "failed": 0},
        explicit_urls=explicit,
    )
    return trigger.serialize()[1]


def single_kwargs(ref: dict, number: int, request_timeout: float) -> dict:
    """The FalRequestTrigger a deferrable SegmentImageOperator defers on, serialized as the triggerer stores it."""
    from airflow_provider_sam3.triggers.fal import FalRequestTrigger

    trigger = FalRequestTrigger(
        reference=ref,
        deadline=(ref.get("submitted_at") or time.time()) + request_timeout,
        poll_interval=None,
        max_poll_interval=None,
        forward_logs=True,
        echo={"image": {"source": f"/data/images/photo_{number:05d}.png", "width": 64, "height": 48}},
    )
    return trigger.serialize()[1]


def classpath(path: str) -> str:
    return (
        "airflow_provider_sam3.triggers.batch.FalBatchTrigger"
        if path == "batch"
        else "airflow_provider_sam3.triggers.fal.FalRequestTrigger"
    )


def run_child(
    workdir: Path,
    emulator,
    path: str,
    mode: str,
    refs: list[dict],
    window: float,  # noqa: ANN001
    max_rss_gb: float,
    fire_at: int | None,
    release: dict | None = None,
    max_window: float | None = None,
) -> dict:
    from airflow_provider_sam3.operators.batch import DEFAULT_BATCH_TIMEOUT
    from airflow_provider_sam3.operators.queue import DEFAULT_TIMEOUT

    n = len(refs)
    max_window = max(window, max_window or window)
    tag = f"{mode}-{path}-{n}"
    now = time.time()
    if path == "batch":
        kwargs = [batch_kwargs(refs, fire_at, now + DEFAULT_BATCH_TIMEOUT.total_seconds())]
        warm = batch_kwargs(refs[:1], None, now + DEFAULT_BATCH_TIMEOUT.total_seconds())
    else:
        kwargs = [single_kwargs(ref, i, DEFAULT_TIMEOUT.total_seconds()) for i, ref in enumerate(refs)]
        warm = single_kwargs(refs[0], 0, DEFAULT_TIMEOUT.total_seconds())
    files = {name: workdir / f"{tag}.{name}.json" for name in ("spec", "kwargs", "ids", "result")}
    files["kwargs"].write_text(json.dumps(kwargs))
    files["ids"].write_text(json.dumps([ref["request_id"] for ref in refs]))
    files["result"].unlink(missing_ok=True)
    spec = {
        "path": path,
        "mode": mode,
        "n": n,
        "window": window,
        "classpath": classpath(path),
        "kwargs": str(files["kwargs"]),
        "ids": str(files["ids"]),
        "result": str(files["result"]),
        "warm_up_kwargs": warm,
        "warm_up_reference": refs[0],
        "emulator_pid": emulator.proc.pid,
        "max_rss_gb": max_rss_gb,
        "release": release,
        "max_window": max_window,
    }
    files["spec"].write_text(json.dumps(spec))
    print(f"{tag}: running ({window:.0f} s window)", file=sys.stderr, flush=True)
    with open(workdir / f"{tag}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(files["spec"])],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **emulator.env},
        )
        try:
            proc.wait(max_window + 600)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not files["result"].exists():
        return {
            "path": path,
            "mode": mode,
            "n": n,
            "failed": f"the child exited {proc.returncode} without a result; see {workdir / (tag + '.log')}",
        }
    result = json.loads(files["result"].read_text())
    print(f"{tag}: " + json.dumps({k: v for k, v in result.items() if k != "samples"}), file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="numbers of waiting requests (phase 1)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds each path waits in phase 1")
    parser.add_argument(
        "--max-window",
        type=float,
        default=480.0,
        help="a phase 1 window is extended up to this many seconds until every trigger has polled "
        "once (then runs half a window more)",
    )
    parser.add_argument("--paths", default="batch,single", help="batch, single or both")
    parser.add_argument("--complete-size", type=int, default=1000, help="requests in phase 2 (0: skip it)")
    parser.add_argument("--complete-service-time", type=float, default=0.2)
    parser.add_argument("--complete-concurrency", type=int, default=16)
    parser.add_argument("--submit-concurrency", type=int, default=32)
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=12.0,
        help="stop a path early when its process grows past this (the machine's safety)",
    )
    parser.add_argument("--out", type=Path, help="update the waiting-cost section of this markdown file")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return

    _raise_fd_limit()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    paths = [path for path in args.paths.split(",") if path]
    workdir = Path(tempfile.mkdtemp(prefix="sam3-waiting-"))
    os.environ.setdefault("AIRFLOW_HOME", str(workdir / "airflow-home"))
    for name in ("AIRFLOW_CONN_FAL_DEFAULT", "FAL_KEY_ID", "FAL_KEY_SECRET"):
        os.environ.pop(name, None)
    print(f"work directory: {workdir}", file=sys.stderr, flush=True)

    from airflow_provider_sam3.batch.pacing import COLLECT_EVERY_MIN, COLLECT_ROUNDS

    waiting: list[dict] = []
    emulator = _emulator(workdir / "emulator-waiting", service_time=3600.0, concurrency=1)
    try:
        os.environ.update(emulator.env)
        started = time.monotonic()
        refs = submit(max(sizes), args.submit_concurrency)
        print(f"submitted {len(refs)} in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        for n in sizes:
            for path in paths:
                # fire_at as the operator computes it by default (collect_every=None, no rate yet): never reached
                # here, since nothing finishes during the window.
                fire_at = max(COLLECT_EVERY_MIN, n // COLLECT_ROUNDS) if path == "batch" else None
                fire_at = fire_at if fire_at and fire_at < n else None
                waiting.append(
                    run_child(
                        workdir,
                        emulator,
                        path,
                        "wait",
                        refs[:n],
                        args.window,
                        args.max_rss_gb,
                        fire_at,
                        max_window=args.max_window,
                    )
                )
    finally:
        emulator.stop()

    complete: list[dict] = []
    if args.complete_size:
        emulator = _emulator(workdir / "emulator-complete", service_time=3600.0, concurrency=1)
        try:
            os.environ.update(emulator.env)
            for path in paths:
                _admin(emulator, "POST", "/_emulator/reset")
                _admin(emulator, "POST", "/_emulator/config", json={"service_time_s": 3600.0, "concurrency": 1})
                plug = submit(1, 1)[0]  # takes the only slot: everything submitted after it stays queued
                refs = submit(args.complete_size, args.submit_concurrency)
                release = {
                    "config": {"service_time_s": args.complete_service_time, "concurrency": args.complete_concurrency},
                    "plug_cancel_url": plug["cancel_url"],
                }
                complete.append(
                    run_child(workdir, emulator, path, "complete", refs, 900.0, args.max_rss_gb, None, release)
                )
        finally:
            emulator.stop()

    results = {"waiting": waiting, "complete": complete}
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2), file=sys.stderr)
    table = render(results, args, sizes)
    print(table)
    if args.out:
        sys.path.insert(0, str(REPO / "bench"))
        from _doc import update_section

        update_section(args.out, "waiting-cost", table)


# ---------------------------------------------------------------------------------------------------- the report


def _num(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def render(results: dict, args: argparse.Namespace, sizes: list[int]) -> str:
    sys.path.insert(0, str(REPO / "bench"))
    from _doc import command_line, machine, today

    lines = [
        "## Waiting cost: one batch trigger vs one trigger per request",
        "",
        f"- machine: {machine()}",
        f"- date: {today()}",
        f"- command: `{command_line()}`",
        f"- phase 1 (waiting): emulator service time 3,600 s, concurrency 1, so every request stays queued (one is "
        f"running); requests submitted with `FalHook.asubmit` ({args.submit_concurrency} at a time). Each path runs "
        f"in a fresh interpreter: trigger class imported and warmed up (one trigger of the same kind polled once), "
        f"RSS taken, then the triggers are rebuilt from the kwargs the operators' triggers serialize and every "
        f"`run()` goes in one asyncio loop (as in the triggerer) for a {args.window:.0f} s window that includes "
        f"building and starting them; when not every trigger has polled once by half the window, the window is "
        f"extended until they all have, plus half a window (at most {args.max_window:.0f} s; the window column "
        "shows the actual length). Memory is the RSS growth at the end of the window (steady state: every "
        "trigger had polled at least once by then, unless the table says otherwise); CPU is the process's user + "
        "system time during the window; calls are the emulator's `/_emulator/counters` difference over the window.",
        "",
        "| path | waiting requests | window | RSS growth | KB per request | peak KB per request | every trigger "
        "polled after | CPU s in window | CPU ms per s of waiting, per request | status calls in window | "
        "status calls per s, per "
        "request | emulator CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {}
    notes = []
    for result in results["waiting"]:
        label = PATHS[result["path"]]
        n = result["n"]
        if result.get("failed"):
            lines.append(f"| {label} | {n:,} | not measured: {result['failed']} | | | | | | | | | |")
            continue
        by_key[(result["path"], n)] = result
        growth = result["rss_end_kb"] - result["rss_before_kb"]
        peak = result["rss_peak_kb"] - result["rss_before_kb"]
        wall = result["wall"]
        polled = (
            f"{result['ready_seconds']:.1f} s"
            if result["ready_seconds"] is not None
            else f"never ({result['polled_distinct']:,} of {n:,} requests polled)"
        )
        lines.append(
            f"| {label} | {n:,} | {wall:.0f} s | {_num(growth / 1024)} MB | {_num(growth / n, 2)} "
            f"| {_num(peak / n, 2)} | {polled} "
            f"| {_num(result['cpu'], 2)} | {_num(result['cpu'] * 1000 / wall / n, 4)} | {result['status_calls']:,} "
            f"| {result['status_calls'] / wall / n:.5f} | {_num(result['emulator_cpu'])} |"
        )
        if result.get("aborted"):
            notes.append(
                f"- {label}, {n:,} requests: {result['aborted']} after {wall:.0f} s; its figures cover "
                "that shorter window."
            )
        if result["ready_seconds"] is None:
            notes.append(
                f"- {label}, {n:,} requests: in one asyncio loop on this machine, starting them did not finish"
                f" within {wall:.0f} s: only {result['polled_distinct']:,} of {n:,} requests had been polled "
                "once, so its row is NOT a steady state (memory and calls would still grow; the CPU was "
                "spent mostly on starting triggers and their connections). Measured as far as it got, "
                "not extrapolated."
            )
        if result.get("trigger_errors") or result.get("error_events"):
            notes.append(
                f"- {label}, {n:,} requests: {result['trigger_errors']} trigger(s) raised and "
                f"{result['error_event_count']} fired an error event during the window (first: "
                f"{(result['first_errors'] + result['error_events'])[:1]})."
            )
        if result["ready_seconds"] is not None and result["triggers"] > 1 and wall - result["ready_seconds"] > 5:
            steady_cpu = (result["cpu"] - result["cpu_ready"]) / (wall - result["ready_seconds"])
            notes.append(
                f"- {label}, {n:,} requests: after every trigger had polled once "
                f"({result['ready_seconds']:.1f} s into the window), CPU was {steady_cpu:.2f} s per s "
                f"({steady_cpu * 1000 / n:.4f} ms per s per request)."
            )
    lines.append("")
    lines.append(
        f"With Airflow's own bookkeeping, which this script does not measure (about "
        f"{AIRFLOW_BOOKKEEPING_KB} KB of triggerer memory per trigger, measured for a real triggerer in the "
        'reference notes, `airflow-3.3-notes.md`, "Costs measured here"): it comes once for the batch '
        "path and once per request for the per-request path. Also documented there and not measured "
        "here: `[triggerer] capacity` defaults to 1,000 triggers per triggerer, so 10,000 per-request "
        "triggers need ten triggerers (or a raised capacity); this script runs them all in one loop:"
    )
    lines.append("")
    lines.append(
        "| path | waiting requests | triggers | measured KB per request | + documented Airflow bookkeeping "
        "| KB per request in a triggerer (estimate) |"
    )
    lines.append("|---|---|---|---|---|---|")
    verdicts = []
    for (path, n), result in by_key.items():
        growth = result["rss_end_kb"] - result["rss_before_kb"]
        measured = growth / n
        bookkeeping = AIRFLOW_BOOKKEEPING_KB * result["triggers"] / n
        lines.append(
            f"| {PATHS[path]} | {n:,} | {result['triggers']:,} | {_num(measured, 2)} | "
            f"{_num(bookkeeping, 2)} | {_num(measured + bookkeeping, 2)} |"
        )
        if path == "batch":
            verdicts.append((n, measured, measured + bookkeeping))
    lines.append("")
    for n, measured, total in verdicts:
        met = "met" if total <= TARGET_KB else "NOT met"
        lines.append(
            f"Target (at most {TARGET_KB:g} KB of triggerer memory per waiting request in the batch path), "
            f"{n:,} requests: **{met}**: {measured:.2f} KB measured, {total:.2f} KB with Airflow's "
            "documented per-trigger bookkeeping."
        )
    for n in sizes:
        batch, single = by_key.get(("batch", n)), by_key.get(("single", n))
        if batch and single:
            bm = max(batch["rss_end_kb"] - batch["rss_before_kb"], 1)
            sm = single["rss_end_kb"] - single["rss_before_kb"]
            cpu_ratio = (single["cpu"] / single["wall"]) / max(batch["cpu"] / batch["wall"], 1e-9)
            calls_ratio = (single["status_calls"] / single["wall"]) / max(batch["status_calls"] / batch["wall"], 1e-9)
            lines.append(
                f"At {n:,} requests the per-request path used {sm / bm:.0f}x the memory (measured, before "
                f"bookkeeping), {cpu_ratio:.0f}x the CPU per second and {calls_ratio:.0f}x the status calls per "
                "second of the batch path"
                + (
                    ""
                    if single["ready_seconds"] is not None
                    else " (its triggers had not all polled once: not a steady state)"
                )
                + "."
            )
    if notes:
        lines.append("")
        lines += notes

    if results["complete"]:
        ideal = args.complete_size / args.complete_concurrency * args.complete_service_time
        lines += [
            "",
            f"Phase 2 (to completion): {args.complete_size:,} requests, emulator service time "
            f"{args.complete_service_time:g} s, concurrency {args.complete_concurrency} (ideal {ideal:.1f} s). The "
            'requests are submitted behind a long "plug" request, so they all wait in the queue, and released '
            "when the triggers start. The batch trigger is built with `fire_at=None` (it waits for every request; "
            "by default the operator also fires early to store outputs and re-defers, which this does not "
            "measure). Status calls are the emulator's count during the run; submit and result fetch are one call "
            "each per request in both paths (made by the worker, not the trigger) and are not counted here.",
            "",
            "| path | requests | completed | last event after | x ideal | status calls | status calls per completed "
            "request | CPU s | emulator CPU s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for result in results["complete"]:
            label = PATHS[result["path"]]
            if result.get("failed"):
                lines.append(f"| {label} | {result['n']:,} | not measured: {result['failed']} | | | | | | |")
                continue
            last = result["last_event_seconds"] or result["wall"]
            per = result["status_calls"] / result["completed"] if result["completed"] else float("nan")
            lines.append(
                f"| {label} | {result['n']:,} | {result['completed']:,} | {last:.1f} s | {last / ideal:.2f} | "
                f"{result['status_calls']:,} | {per:.2f} | {_num(result['cpu'], 2)} | {_num(result['emulator_cpu'])} |"
            )
            if result.get("aborted"):
                lines.append(f"\n- {label}: {result['aborted']}.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
