"""The batch engine on its own, with no Airflow around it: planned, run against the emulator, its state in a plain
store, its manifest written; and its modules import nothing of Airflow."""

from __future__ import annotations

import json
import subprocess
import sys

from engine_runs import LOG, SHARED, PlainStore, planned, run_engine

from airflow_provider_sam3.batch.engine import BatchEngine
from airflow_provider_sam3.batch.manifest import write_manifest
from airflow_provider_sam3.batch.options import BatchOptions
from airflow_provider_sam3.batch.planning import requeue_failures
from airflow_provider_sam3.batch.state import BatchState


def test_the_engine_runs_a_batch_without_airflow(photos, tmp_path, fal_emulator):
    fal_emulator.configure(concurrency=4, service_time_s=0.05)
    paths = photos(30)
    endpoint, state = planned(paths)
    store = PlainStore()
    options = BatchOptions(max_in_flight=10, submit_concurrency=3, poll_interval=0.1, shared_arguments=SHARED)

    engine = BatchEngine(None, endpoint, state, tmp_path, store, options, LOG)
    assert run_engine(engine) is None  # not deferrable: every image is final when it returns
    rows = [json.loads(line) for line in write_manifest(tmp_path, state.ordered()).read_text().splitlines()]
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    assert all(row["status"] == "succeeded" and row["masks"] for row in rows)
    assert fal_emulator.counters()["submissions"]["total"] == 30
    assert fal_emulator.counters()["max_in_progress"] <= 4
    reloaded = BatchState.load(store)  # the store holds the batch as the engine left it
    assert reloaded is not None and reloaded.counts()["done"] == 30


def test_the_engine_imports_nothing_of_airflow():
    code = (
        "import sys\n"
        "import airflow_provider_sam3.batch.engine, airflow_provider_sam3.batch.planning\n"
        "import airflow_provider_sam3.batch.manifest, airflow_provider_sam3.batch.polling\n"
        "import airflow_provider_sam3.batch.inputs, airflow_provider_sam3.batch.results\n"
        "import airflow_provider_sam3.batch.submit, airflow_provider_sam3.batch.summary\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_failure_put_back_in_line_counts_as_a_resubmission_only_once_sent(photos, tmp_path, fal_emulator):
    """Four earlier failures go back in line, but only two fit in flight before the batch's deadline passes: the
    summary's resubmissions are the two sent, as fal's submission counter says."""
    import time

    from airflow_provider_sam3.batch.summary import build_summary

    fal_emulator.configure(concurrency=1, service_time_s=60.0)  # nothing finishes before the deadline
    paths = photos(6)
    endpoint, state = planned(paths)
    for entry in state.ordered()[:4]:
        entry.fail("fal's runner was restarting", "FalTransientError", retryable=True)
    state.deadline = time.time() + 8  # room for a busy machine to submit the first two before it passes
    options = BatchOptions(max_in_flight=2, submit_concurrency=2, poll_interval=0.2, shared_arguments=SHARED)
    engine = BatchEngine(None, endpoint, state, tmp_path, PlainStore(), options, LOG)
    requeue_failures(state, options, LOG)
    assert state.counts()["pending"] == 6

    assert run_engine(engine) is None  # the deadline ends the batch: what was sent is cancelled
    summary = build_summary(endpoint, state, tmp_path, "manifest")
    assert fal_emulator.counters()["submissions"]["total"] == summary["submissions"] == 2
    assert summary["resubmissions"] == 2  # images 0 and 1; images 2 and 3 went back in line but were never sent
    assert [entry.retries for entry in state.ordered()] == [1, 1, 0, 0, 0, 0]
