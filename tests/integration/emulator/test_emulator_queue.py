"""The queue's scheduling and the fault injector's decisions, in-process (no HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.testing.emulator.config import EmulatorConfig, FaultRule
from airflow_provider_sam3.testing.emulator.faults import FaultInjector
from airflow_provider_sam3.testing.emulator.queue import COMPLETED, IN_PROGRESS, Counters, RequestQueue, RequestRecord
from airflow_provider_sam3.testing.emulator.results import AppResult

ENDPOINT = ENDPOINTS["fal-ai/sam-3/image"]


def _queue(config: EmulatorConfig, done: list[str]) -> RequestQueue:
    async def run_app(record: RequestRecord) -> AppResult:
        return AppResult(200, {"ok": record.request_id})

    return RequestQueue(lambda: config, run_app, lambda record, result: done.append(record.request_id), Counters())


def _record(index: int, priority: str = "normal") -> RequestRecord:
    return RequestRecord(request_id=f"r{index}", endpoint=ENDPOINT, arguments={}, priority=priority)


def test_ten_thousand_queued_requests_are_cheap():
    async def scenario() -> None:
        config = EmulatorConfig(concurrency=2, service_time_s=60, in_progress_logs=0)
        queue = _queue(config, [])
        records = [_record(i) for i in range(10_000)]
        positions = [queue.submit(r) for r in records]  # its cost is a benchmark (bench/waiting_cost.py), not a test
        assert positions[:3] == [0, 0, 0] and positions[-1] == 9_997
        assert queue.in_progress == 2 and queue.queue_length == 9_998
        assert len(asyncio.all_tasks()) == 1 + 2  # this coroutine and the two running requests, none per queued one
        queue.cancel(records[5_000])
        assert queue.position(records[-1]) == 9_996
        assert queue.position(records[4_999]) == 4_997
        queue.clear()

    asyncio.run(scenario())


def test_fifo_within_priority_and_low_behind_normal():
    async def scenario() -> None:
        done: list[str] = []
        config = EmulatorConfig(concurrency=1, service_time_s=0.01, in_progress_logs=0)
        queue = _queue(config, done)
        queue.submit(_record(0))
        low = _record(1, "low")
        queue.submit(low)
        normal = [_record(i) for i in (2, 3)]
        for record in normal:
            queue.submit(record)
        assert [queue.position(r) for r in (normal[0], normal[1], low)] == [0, 1, 2]
        while len(done) < 4:
            await asyncio.sleep(0.005)
        assert done == ["r0", "r2", "r3", "r1"]
        assert queue.counters.max_in_progress == 1

    asyncio.run(scenario())


def test_cancel_before_the_run_begins_frees_the_slot():
    async def scenario() -> None:
        done: list[str] = []
        queue = _queue(EmulatorConfig(concurrency=1, service_time_s=0.01, in_progress_logs=0), done)
        first, second = _record(0), _record(1)
        queue.submit(first)
        queue.submit(second)
        assert first.state == IN_PROGRESS
        assert queue.cancel(first) == "CANCELLATION_REQUESTED"
        while len(done) < 2:
            await asyncio.sleep(0.005)
        assert first.result_status == 499 and second.result_status == 200
        assert first.state == second.state == COMPLETED and queue.in_progress == 0
        assert queue.cancel(first) == "ALREADY_COMPLETED"

    asyncio.run(scenario())


def test_fault_schedules_and_seeded_rates_are_deterministic():
    injector = FaultInjector([FaultRule(kind="nginx_502", target="status", first=2)])
    assert [bool(injector.decide("status", None)) for _ in range(4)] == [True, True, False, False]
    assert injector.decide("result", None) is None

    injector = FaultInjector([FaultRule(kind="rate_limit_429", every=3, endpoint_id="fal-ai/sam-3/image-rle")])
    fired = [bool(injector.decide("submit", "fal-ai/sam-3/image-rle")) for _ in range(6)]
    assert fired == [False, False, True, False, False, True]
    assert injector.decide("submit", "fal-ai/sam-3/image") is None

    def pattern(seed: int) -> list[bool]:
        rates = FaultInjector([FaultRule(kind="nginx_503", rate=0.5)], seed=seed)
        return [bool(rates.decide("status", None)) for _ in range(40)]

    assert pattern(3) == pattern(3)
    assert 5 < sum(pattern(3)) < 35
    assert pattern(3) != pattern(4)


def test_request_faults_are_decided_at_submit_only():
    injector = FaultInjector([FaultRule(kind="app_500", first=1)])
    assert injector.decide("submit", None) is None
    assert injector.decide("submit", None, request_fault=True).kind == "app_500"
    with pytest.raises(ValueError, match="submit"):
        FaultRule(kind="expire_early", target="result", first=1)
    with pytest.raises(ValueError, match="exactly one"):
        FaultRule(kind="nginx_502", first=1, rate=0.5)
    with pytest.raises(ValueError, match="not a registry endpoint"):
        FaultRule(kind="nginx_502", first=1, endpoint_id="fal-ai/sam-3/imag")


def test_a_request_is_billed_once_it_started_and_only_then():
    """As on fal: running is what costs. Cancelled while queued, timed out before it started, crashed (5xx) or lost
    by fal: not billed. Cancelled while running, failed on bad input (422) or completed: billed."""

    async def scenario() -> None:
        config = EmulatorConfig(concurrency=2, service_time_s=0.2, in_progress_logs=0)

        async def run_app(record: RequestRecord) -> AppResult:
            return AppResult(422, {"detail": "bad"}) if record.request_id == "r-422" else AppResult(200, {})

        counters = Counters()
        queue = RequestQueue(lambda: config, run_app, lambda record, result: None, counters)
        names = ("r-running-cancelled", "r-422", "r-queued-cancelled", "r-crash", "r-ok", "r-timeout", "r-vanished")
        records = {name: RequestRecord(request_id=name, endpoint=ENDPOINT, arguments={}) for name in names}
        records["r-crash"].fault = "app_500"
        records["r-timeout"].start_timeout_s = 0.05
        for name in names[:-1]:
            queue.submit(records[name])
        assert [records[n].state for n in names[:3]] == [IN_PROGRESS, IN_PROGRESS, "IN_QUEUE"]
        queue.cancel(records["r-queued-cancelled"])
        queue.cancel(records["r-running-cancelled"])
        while any(records[name].state != COMPLETED for name in names[:-1]):
            await asyncio.sleep(0.01)
        queue.submit(records["r-vanished"])  # a free slot: it starts at once
        assert records["r-vanished"].state == IN_PROGRESS and records["r-vanished"].billed
        queue.forget(records["r-vanished"])  # fal lost it
        billed = {name for name, record in records.items() if record.billed}
        assert billed == {"r-running-cancelled", "r-422", "r-ok"}, billed
        assert counters.billed == 3
        assert records["r-timeout"].started_at is None  # its start deadline passed while it waited
        queue.clear()

    asyncio.run(scenario())
