"""A try whose task-state-store writes are refused (Airflow failed, cleared or replaced it while it submitted) stops
before sending anything more; the requests fal created for its calls in flight are handed to the next try through
the task's folder, and the next try adopts them: each image is sent once and billed once."""

from __future__ import annotations

import json

import pytest
from engine_runs import LOG, SHARED, LogLines, PlainStore, planned, run_engine

from airflow_provider_sam3.batch.engine import BatchEngine
from airflow_provider_sam3.batch.manifest import write_manifest
from airflow_provider_sam3.batch.options import BatchOptions
from airflow_provider_sam3.batch.state import BatchState
from airflow_provider_sam3.batch.unrecorded import LEDGER_FOLDER
from airflow_provider_sam3.exceptions import StateStoreRefusedError


class TakenAwayError(RuntimeError):
    """What the task SDK raises once the execution API no longer knows this try."""


class StoreTakenAway(PlainStore):
    """Accepts the journal rows that keep the recorded submissions at most ``limit`` (rows of reservations alone are
    always accepted), then refuses every write, as Airflow does for a replaced try. Counted in submissions, not rows:
    slots whose calls return together share a row, so how many rows a round writes depends on timing."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.accepted: list[str] = []
        """Request ids whose outcome was in an accepted journal row."""
        self.refusing = False
        self.refused_submissions: list[str] = []
        """Request ids whose outcome was in a refused journal row."""

    def set(self, key, value):
        submissions = (
            [e["r"] for e in value["e"] if e.get("st") == "submitted"] if key.startswith("fal_batch.j.") else []
        )
        self.refusing = self.refusing or len(self.accepted) + len(submissions) > self.limit
        if self.refusing:
            self.refused_submissions += submissions
            raise TakenAwayError("API_SERVER_ERROR: 404 Task instance not found")
        self.accepted += submissions
        super().set(key, value)


@pytest.mark.parametrize("limit", [0, 3], ids=["refused-after-the-reservations", "refused-mid-round"])
def test_a_refused_try_hands_its_requests_over_and_the_next_try_pays_once(limit, photos, tmp_path, fal_emulator):
    fal_emulator.configure(concurrency=4, service_time_s=0.05)  # requests start at once: a cancel would not refund
    paths = photos(12)
    endpoint, state = planned(paths)
    store = StoreTakenAway(limit=limit)
    state.save(store)
    options = BatchOptions(max_in_flight=12, submit_concurrency=4, poll_interval=0.1, shared_arguments=SHARED)

    with LogLines() as lines, pytest.raises(StateStoreRefusedError):
        run_engine(BatchEngine(None, endpoint, state, tmp_path, store, options, LOG))

    first_try = {r["request_id"] for r in fal_emulator.requests()}
    next_store = PlainStore()  # what the next try finds: everything the refused try made durable
    next_store.values = json.loads(json.dumps(store.values))
    durable = BatchState.load(PlainStore.copy_of(next_store))
    recorded = {e.request_id for e in durable.entries.values() if e.state == "submitted"}
    reserved = [e for e in durable.entries.values() if e.state == "sending"]
    handed = {path.name.split("-", 1)[1].removesuffix(".json") for path in (tmp_path / LEDGER_FOLDER).iterdir()}
    assert first_try == recorded | handed and not recorded & handed  # every request is recorded or handed over
    assert 1 <= len(handed) <= options.submit_concurrency  # only the calls in flight when the writes stopped
    assert len(reserved) == len(handed)  # each was durably reserved before it was sent
    assert recorded == set(store.accepted) and len(recorded) <= limit  # what the store accepted, nothing more
    # each call in flight had its outcome in exactly one refused journal row (slots that returned together share a
    # row), and nothing was written or reserved after the refusal
    assert sorted(store.refused_submissions) == sorted(handed)
    warnings = "\n".join(line for line in lines if "handed to the next try" in line)
    assert all(request_id in warnings for request_id in handed), warnings
    assert fal_emulator.counters()["cancels"]["total"] == 0

    # The next try: the store works. It adopts the handed-over requests and sends only what was never sent.
    resumed = BatchState.load(next_store)
    assert run_engine(BatchEngine(None, endpoint, resumed, tmp_path, next_store, options, LOG)) is None
    rows = [json.loads(line) for line in write_manifest(tmp_path, resumed.ordered()).read_text().splitlines()]
    assert [row["status"] for row in rows] == ["succeeded"] * 12
    assert {row["request_id"] for row in rows} >= handed  # adopted, not paid again
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 12 == counters["billed"]
    assert sum(row["submissions"] for row in rows) == 12
