"""A request fal created but the task state store refused to record is cancelled at once, and the next try pays
for each image once. Airflow refuses a try's writes when the scheduler has moved the task instance on (seen under
``airflow standalone``: a late executor event fails a resumed try while it submits, and its store writes get 404)."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_provider_sam3.batch.engine import BatchEngine, BatchOptions
from airflow_provider_sam3.batch.manifest import write_manifest
from airflow_provider_sam3.batch.state import BatchState
from engine_runs import LOG, SHARED, PlainStore, planned, run_engine


class TakenAwayError(RuntimeError):
    """What the task SDK raises once the execution API no longer knows this try."""


class StoreTakenAway(PlainStore):
    """Accepts ``journal_writes`` journal rows, then refuses every write, as Airflow does for a replaced try."""

    def __init__(self, journal_writes: int) -> None:
        super().__init__()
        self.journal_writes = journal_writes

    def set(self, key, value):
        if key.startswith("fal_batch.j.") and self.journal_writes <= 0:
            raise TakenAwayError("API_SERVER_ERROR: 404 Task instance not found")
        if key.startswith("fal_batch.j."):
            self.journal_writes -= 1
        super().set(key, value)


def test_a_submission_the_store_refuses_is_cancelled_and_the_next_try_pays_once(photos, tmp_path, fal_emulator, caplog):
    fal_emulator.configure(concurrency=1, service_time_s=30.0)  # everything stays queued while the first try runs
    paths = photos(12)
    endpoint, state = planned(paths)
    store = StoreTakenAway(journal_writes=5)
    state.save(store)
    options = BatchOptions(max_in_flight=12, submit_concurrency=4, poll_interval=0.1, shared_arguments=SHARED)

    with caplog.at_level(logging.WARNING, logger=LOG.name), pytest.raises(TakenAwayError):
        run_engine(BatchEngine(None, endpoint, state, tmp_path, store, options, LOG))

    durable = BatchState.load(store)
    assert durable is not None
    recorded = {e.request_id for e in durable.entries.values() if e.state == "submitted"}
    first_try = {r["request_id"]: r for r in fal_emulator.requests()}
    unrecorded = set(first_try) - recorded
    assert len(recorded) == 5
    assert 1 <= len(unrecorded) <= options.submit_concurrency  # the calls that were in flight when writes stopped
    assert all(first_try[request_id]["cancelled"] for request_id in unrecorded), first_try
    assert not any(first_try[request_id]["cancelled"] for request_id in recorded)
    warnings = "\n".join(r.getMessage() for r in caplog.records if "could not be saved" in r.getMessage())
    assert all(request_id in warnings for request_id in unrecorded), warnings

    # The next try: the store works, fal is quick. Nothing recorded is submitted again; nothing unrecorded is paid.
    fal_emulator.configure(concurrency=4, service_time_s=0.05)
    next_store = PlainStore()
    next_store.values = json.loads(json.dumps(store.values))
    resumed = BatchState.load(next_store)
    assert run_engine(BatchEngine(None, endpoint, resumed, tmp_path, next_store, options, LOG)) is None
    rows = [json.loads(line) for line in write_manifest(tmp_path, resumed.ordered()).read_text().splitlines()]
    assert [row["status"] for row in rows] == ["succeeded"] * 12
    billed = {r["request_id"] for r in fal_emulator.requests() if r["state"] == "COMPLETED" and not r["cancelled"]}
    assert billed == {row["request_id"] for row in rows}  # one paid request per image, each in the manifest
    assert recorded <= billed
    assert fal_emulator.counters()["submissions"]["total"] == 12 + len(unrecorded)
