"""Request records, their state machine (IN_QUEUE -> IN_PROGRESS -> COMPLETED) and the account's queue.

Only IN_PROGRESS requests count against ``concurrency``; the rest wait FIFO, ``low`` priority behind every
``normal`` one. Everything runs on the server's event loop: one asyncio task per *running* request, none per
queued request, so 10,000 queued requests cost two deques and their records.

Billing follows fal: a request is billed once it *started* (IN_PROGRESS), whether it then completes, fails on
bad input (422) or is cancelled while running (a cancel is not a refund). It is not billed when it never started
(cancelled while queued, start deadline passed), when the app crashed (fal does not bill 5xx failures), or when
fal lost it (the ``vanish`` fault: fal keeps no record to bill).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_provider_sam3.endpoints import Endpoint
from airflow_provider_sam3.testing.emulator.config import EmulatorConfig
from airflow_provider_sam3.testing.emulator.results import CANCELLED, CRASHED, START_TIMEOUT, AppResult

__all__ = ["Counters", "RequestQueue", "RequestRecord"]

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"
log = logging.getLogger("airflow_provider_sam3.testing.emulator")


@dataclass(eq=False)
class RequestRecord:
    """One submitted request. Its arguments are dropped at completion, its result body at expiry."""

    request_id: str
    endpoint: Endpoint
    arguments: Any
    priority: str = "normal"
    runner_hint: str | None = None
    webhook_url: str | None = None
    start_timeout_s: float | None = None
    fault: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    state: str = IN_QUEUE
    cancelled: bool = False
    billed: bool = False
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    inference_time: float | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    result_status: int | None = None
    result_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    error_type: str | None = None
    result_bytes: bytes | None = None
    result_expires_at: float | None = None
    result_fetched: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)
    deadline: asyncio.TimerHandle | None = field(default=None, repr=False)
    generation: int = 0

    def log(self, message: str, level: str = "INFO") -> None:
        stamp = datetime.now(timezone.utc).isoformat()
        self.logs.append({"message": message, "level": level, "source": "USER", "timestamp": stamp})

    def result_body(self) -> bytes | None:
        """The stored result body, or ``None`` once it has expired (it is then dropped)."""
        if self.result_expires_at is not None and time.monotonic() >= self.result_expires_at:
            self.result_bytes = None
        return self.result_bytes

    @property
    def result_expired(self) -> bool:
        return self.state == COMPLETED and self.result_body() is None

    def __post_init__(self) -> None:
        self.argument_summary = _summarize(self.arguments)

    def summary(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "arguments": self.argument_summary,
            "endpoint_id": self.endpoint.endpoint_id,
            "state": self.state,
            "priority": self.priority,
            "runner_hint": self.runner_hint,
            "webhook_url": self.webhook_url,
            "start_timeout_s": self.start_timeout_s,
            "headers": dict(self.headers),
            "fault": self.fault,
            "cancelled": self.cancelled,
            "billed": self.billed,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "result_status": self.result_status,
            "result_expired": self.result_expired,
        }


def _summarize(arguments: Any) -> Any:
    """The request's arguments as sent, with long strings (image data URIs) cut to their length, so tests can
    check what was asked without the emulator keeping whole images."""
    if isinstance(arguments, dict):
        return {key: _summarize(value) for key, value in arguments.items()}
    if isinstance(arguments, list):
        return [_summarize(value) for value in arguments]
    if isinstance(arguments, str) and len(arguments) > 120:
        return f"{arguments[:40]}...<{len(arguments)} characters>"
    return arguments


@dataclass
class Counters:
    """What the emulator saw; calls are counted when received, including those answered with a fault."""

    submissions: Counter = field(default_factory=Counter)
    cancels: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)
    status_calls: int = 0
    stream_calls: int = 0
    result_calls: int = 0
    completed: int = 0
    billed: int = 0
    max_in_progress: int = 0
    webhooks_sent: int = 0
    webhooks_failed: int = 0
    uploads: int = 0
    upload_bytes: int = 0

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]


class RequestQueue:
    """Owns every record and decides when each starts, ends or is cancelled."""

    def __init__(
        self,
        config: Callable[[], EmulatorConfig],
        run_app: Callable[[RequestRecord], Awaitable[AppResult]],
        on_complete: Callable[[RequestRecord, AppResult], None],
        counters: Counters,
    ) -> None:
        self._config = config
        self._run_app = run_app
        self._on_complete = on_complete
        self.counters = counters
        self.records: dict[str, RequestRecord] = {}
        self._normal: deque[RequestRecord] = deque()
        self._low: deque[RequestRecord] = deque()
        self.in_progress = 0
        self._generation = 0
        self._rng = random.Random(config().seed)
        self._stored: deque[tuple[RequestRecord, int]] = deque()
        self.result_bytes = 0
        """Bytes of result bodies held (an expired one counts until the budget check passes it)."""

    @property
    def queue_length(self) -> int:
        return len(self._normal) + len(self._low)

    def get(self, request_id: str) -> RequestRecord | None:
        return self.records.get(request_id)

    def submit(self, record: RequestRecord) -> int:
        """Enqueue ``record`` and start what the concurrency limit allows; returns its queue position."""
        record.generation = self._generation
        self.records[record.request_id] = record
        (self._low if record.priority == "low" else self._normal).append(record)
        if record.start_timeout_s is not None:
            loop = asyncio.get_running_loop()
            record.deadline = loop.call_later(record.start_timeout_s, self._start_deadline, record)
        self.dispatch()
        return self.position(record) if record.state == IN_QUEUE else 0

    def position(self, record: RequestRecord) -> int:
        """How many requests will start before ``record`` (0-indexed)."""
        if record.priority == "low":
            return len(self._normal) + self._low.index(record)
        return self._normal.index(record)

    def dispatch(self) -> None:
        """Start queued requests while the concurrency limit allows."""
        limit = self._config().concurrency
        while self.in_progress < limit and (self._normal or self._low):
            record = self._normal.popleft() if self._normal else self._low.popleft()
            if record.deadline is not None:
                record.deadline.cancel()
            record.state = IN_PROGRESS
            record.started_at = time.time()
            self._bill(record, True)
            self.in_progress += 1
            self.counters.max_in_progress = max(self.counters.max_in_progress, self.in_progress)
            record.task = asyncio.get_running_loop().create_task(self._run(record))
            record.task.add_done_callback(functools.partial(self._task_done, record))

    def cancel(self, record: RequestRecord) -> str:
        """Cancel ``record``: ``CANCELLATION_REQUESTED``, or ``ALREADY_COMPLETED`` when it has finished."""
        if record.state == COMPLETED:
            return "ALREADY_COMPLETED"
        record.cancelled = True
        if record.state == IN_QUEUE:
            self._unqueue(record)
            self._complete(record, CANCELLED)
        elif record.task is not None:
            record.task.cancel()
        return "CANCELLATION_REQUESTED"

    def _bill(self, record: RequestRecord, billed: bool) -> None:
        """Bill ``record`` (it started) or take the charge back (its app crashed, or fal lost it)."""
        if record.billed != billed:
            record.billed = billed
            self.counters.billed += 1 if billed else -1

    def forget(self, record: RequestRecord) -> None:
        """Drop ``record`` without a trace (the ``vanish`` fault): later calls get 404, and it is not billed."""
        self._bill(record, False)
        self.records.pop(record.request_id, None)
        if record.state == IN_QUEUE:
            self._unqueue(record)
        elif record.state == IN_PROGRESS and record.task is not None:
            record.task.cancel()

    def clear(self) -> None:
        """Forget every request; running ones are stopped and no longer count."""
        self._generation += 1
        for record in self.records.values():
            if record.deadline is not None:
                record.deadline.cancel()
            if record.task is not None and not record.task.done():
                record.task.cancel()
        self.records.clear()
        self._normal.clear()
        self._low.clear()
        self._stored.clear()
        self.result_bytes = 0
        self.in_progress = 0
        self.reseed(self._config().seed)

    def reseed(self, seed: int) -> None:
        """Restart the service-time jitter RNG from ``seed``."""
        self._rng = random.Random(seed)

    def _unqueue(self, record: RequestRecord) -> None:
        (self._low if record.priority == "low" else self._normal).remove(record)
        if record.deadline is not None:
            record.deadline.cancel()

    def _start_deadline(self, record: RequestRecord) -> None:
        if record.state == IN_QUEUE and self.records.get(record.request_id) is record:
            self._unqueue(record)
            self._complete(record, START_TIMEOUT)

    async def _crash(self, record: RequestRecord) -> AppResult:
        return CRASHED

    async def _run(self, record: RequestRecord) -> None:
        config = self._config()
        started = time.monotonic()
        jitter = self._rng.uniform(0, config.service_jitter_s) if config.service_jitter_s else 0.0
        service = config.service_time_s + jitter
        work = asyncio.ensure_future(self._crash(record) if record.fault == "app_500" else self._run_app(record))
        work.add_done_callback(lambda task: task.cancelled() or task.exception())
        if record.fault == "cancel_elsewhere":
            asyncio.get_running_loop().call_later(service / 2, self.cancel, record)
        steps = config.in_progress_logs
        try:
            for step in range(steps):
                record.log(f"{record.endpoint.title}: step {step + 1} of {steps}")
                await asyncio.sleep(service / steps)
            if not steps:
                await asyncio.sleep(service)
            result = await work
        except asyncio.CancelledError:
            work.cancel()
            if not record.cancelled:
                raise
            result = CANCELLED
        except Exception:
            log.exception("the %s app crashed on request %s", record.endpoint.endpoint_id, record.request_id)
            result = CRASHED
        record.inference_time = round(time.monotonic() - started, 6)
        self._finish(record, result)

    def _finish(self, record: RequestRecord, result: AppResult) -> None:
        if record.generation != self._generation or record.state != IN_PROGRESS:
            return
        self.in_progress -= 1
        if self.records.get(record.request_id) is record:
            self._complete(record, result)
        else:
            record.state = COMPLETED
        self.dispatch()

    def _task_done(self, record: RequestRecord, task: asyncio.Task) -> None:
        """Release the slot of a run that ended without finishing (forgotten, or cancelled before it began)."""
        self._finish(record, CANCELLED)

    def _keep_results_within_budget(self, record: RequestRecord, budget: int) -> None:
        """Hold ``record``'s result body, then keep held bodies within ``budget``."""
        size = len(record.result_bytes or b"")
        self._stored.append((record, size))
        self.result_bytes += size
        self.enforce_result_budget(budget)

    def enforce_result_budget(self, budget: int | None = None) -> None:
        """Expire the oldest results already fetched while the bodies held exceed ``budget``. A result nobody has
        fetched yet is kept (until its retention ends): a client that waits, defers or retries still finds it,
        as on fal; one fetched is rarely fetched again."""
        budget = self._config().result_budget_bytes if budget is None else budget
        unfetched: list[tuple[RequestRecord, int]] = []
        while self._stored and self.result_bytes > budget:  # oldest first; stops once within the budget
            held_record, held = self._stored.popleft()
            if held_record.result_bytes is None:  # expired by its retention
                self.result_bytes -= held
            elif held_record.result_fetched:
                held_record.result_bytes = None
                self.result_bytes -= held
            else:
                unfetched.append((held_record, held))
        self._stored.extendleft(reversed(unfetched))  # back in front, oldest first: O(kept), not O(held)

    def _complete(self, record: RequestRecord, result: AppResult) -> None:
        if record.generation != self._generation:
            return
        config = self._config()
        record.state = COMPLETED
        record.completed_at = time.time()
        record.arguments = None
        record.result_status, record.result_headers = result.status_code, result.headers
        record.error, record.error_type = result.error, result.error_type
        if result.status_code >= 500:
            self._bill(record, False)  # fal does not bill a request its app failed with a 5xx
        record.result_bytes = result.encoded()
        large = len(record.result_bytes) >= config.large_result_bytes
        retention = config.large_result_retention_s if large else config.result_retention_s
        record.result_expires_at = time.monotonic() + (0.0 if record.fault == "expire_early" else retention)
        self._keep_results_within_budget(record, config.result_budget_bytes)
        if record.inference_time is None:
            record.inference_time = 0.0
        self.counters.completed += 1
        self._on_complete(record, result)
