"""The single-image operator never pays twice across tries of one run: nothing is sent without a durable
reservation, a request the store refuses to record is cancelled while queued, and a try that Airflow fails after it
finished leaves its result for the next try. A clear of the run (a new epoch) starts afresh.

The operator runs against the emulator over TLS with the real hook; the task state store is the small in-memory
one the engine tests use, wrapped where a test needs Airflow to refuse this try's writes."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import pytest
from engine_runs import PlainStore

from airflow_provider_sam3.operators.reattach import STATE_KEY
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator


class RefusingStore(PlainStore):
    """Accepts ``writes`` writes, then refuses every one, as Airflow does once a try was failed or replaced."""

    def __init__(self, writes: int) -> None:
        super().__init__()
        self.accepted = writes

    def set(self, key, value):
        if self.accepted <= 0:
            raise RuntimeError("API_SERVER_ERROR: 404 Task instance not found")
        self.accepted -= 1
        super().set(key, value)


def context(store, clear_number: int = 0) -> dict:
    return {"task_state_store": store, "dag_run": SimpleNamespace(clear_number=clear_number)}


def operator(photo, **kwargs) -> SegmentImageOperator:
    return SegmentImageOperator(
        task_id="seg", image=str(photo), prompt="x", deferrable=False, poll_interval=0.2, **kwargs
    )


def test_a_try_failed_after_it_finished_leaves_its_result_to_the_next_try(photo, fal_emulator):
    store = PlainStore()
    first = operator(photo).execute(context(store))
    # Airflow fails that try after execute returned (apache/airflow#67287): the next try of the same run...
    again = operator(photo).execute(context(store))
    assert again == first and again["masks"]
    assert fal_emulator.counters()["submissions"]["total"] == 1 == fal_emulator.counters()["billed"]
    # ...and after a clear of the run (a new epoch), the task runs the request again, as a clear asks.
    cleared = operator(photo).execute(context(store, clear_number=1))
    assert cleared["request_id"] != first["request_id"]
    assert fal_emulator.counters()["submissions"]["total"] == 2


def test_a_large_result_is_kept_in_parts_within_the_stores_value_limit(photo, fal_emulator):
    from airflow_provider_sam3.operators.sam3 import SegmentImageRleOperator

    store = PlainStore()
    task = SegmentImageRleOperator(task_id="rle", image=str(photo), prompt="x", deferrable=False, poll_interval=0.2)
    first = task.execute(context(store))
    sizes = {key: len(str(value)) for key, value in store.values.items()}
    assert sizes and max(sizes.values()) <= 60_000 + 100, sizes
    assert (
        SegmentImageRleOperator(
            task_id="rle", image=str(photo), prompt="x", deferrable=False, poll_interval=0.2
        ).execute(context(store))
        == first
    )
    assert fal_emulator.counters()["submissions"]["total"] == 1


def test_a_changed_request_is_not_answered_with_the_kept_result(photo, fal_emulator):
    store = PlainStore()
    operator(photo).execute(context(store))
    changed = SegmentImageOperator(
        task_id="seg", image=str(photo), prompt="other", deferrable=False, poll_interval=0.2
    ).execute(context(store))
    assert changed["masks"] is not None
    assert fal_emulator.counters()["submissions"]["total"] == 2


def test_without_waiting_the_next_try_returns_the_same_reference(photo, fal_emulator):
    store = PlainStore()
    first = operator(photo, wait_for_completion=False).execute(context(store))
    again = operator(photo, wait_for_completion=False).execute(context(store))
    assert again == first and fal_emulator.counters()["submissions"]["total"] == 1


def test_a_refused_reservation_sends_nothing(photo, fal_emulator):
    with pytest.raises(Exception, match="refused to save 'fal_request'"):
        operator(photo).execute(context(RefusingStore(writes=0)))
    assert fal_emulator.counters()["submissions"]["total"] == 0


def test_a_request_the_store_refuses_to_record_is_cancelled_while_queued(photo, fal_emulator):
    fal_emulator.configure(concurrency=1, service_time_s=30.0)
    blocker = operator(photo, wait_for_completion=False).execute(context(PlainStore()))  # holds the only slot
    with pytest.raises(Exception, match="refused to save 'fal_request'"):
        operator(photo).execute(context(RefusingStore(writes=1)))  # the reservation is accepted, the record not
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    [unrecorded] = [r for rid, r in records.items() if rid != blocker["request_id"]]
    assert unrecorded["cancelled"] and not unrecorded["billed"]


def test_a_reservation_an_earlier_try_left_unanswered_is_waited_out_then_sent_again(photo, fal_emulator, capfd):
    store = PlainStore()
    store.set(STATE_KEY, {"reserved_at": time.time() - 120.0, "lease": 60.0, "fingerprint": "f"})
    document = operator(photo).execute(context(store))
    assert document["masks"] and fal_emulator.counters()["submissions"]["total"] == 1
    out, err = capfd.readouterr()
    assert "left no record of fal's answer" in out + err


def test_on_kill_on_the_worker_cancels_a_queued_request_and_leaves_a_running_one(photo, fal_emulator):
    """The worker's on_kill runs in a signal handler: it cancels only what is still queued (fal bills a request once
    it started), through a copy of the hook with its settings already resolved."""
    from airflow_provider_sam3.hooks.fal import FalHook

    fal_emulator.configure(concurrency=1, service_time_s=30.0)
    hook = FalHook()
    body = {"image_url": "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()}
    running = hook.submit("fal-ai/sam-3/image", {**body, "prompt": "x"})
    queued = hook.submit("fal-ai/sam-3/image", {**body, "prompt": "x"})
    task = operator(photo)
    for reference in (running, queued):
        task._inflight = (hook, reference)
        task.on_kill()
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    assert records[queued.request_id]["cancelled"] and not records[queued.request_id]["billed"]
    assert not records[running.request_id]["cancelled"] and records[running.request_id]["billed"]
