"""Cancelling a batch's requests at fal: all of them (the batch's deadline), or only those still queued (a clear, a
mark or a kill of the task: fal bills a request once it started, cancelled or not, so a running one is left for a
later try to fetch). Works from async code, and from synchronous code and signal handlers through a thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_sam3.exceptions import Sam3ProviderError

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.ports import FalQueue
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = [
    "CANCEL_CONCURRENCY",
    "TRIGGER_ON_KILL_SECONDS",
    "WORKER_ON_KILL_SECONDS",
    "CancelReport",
    "cancel_all",
    "cancel_queued",
    "cancel_queued_in_a_thread",
    "outlasting_repeated_cancels",
]

T = TypeVar("T")
_OUTLIVING: set[asyncio.Future[Any]] = set()

CANCEL_CONCURRENCY = 32
STATUS_SLICE = 8
"""Statuses read at once while ``cancel_queued`` looks for the end of what already started."""
TRIGGER_ON_KILL_SECONDS = 25.0
"""How long a trigger's ``on_kill`` spends cancelling: Airflow gives it 30 s (``[triggerer] on_kill_timeout``)."""
WORKER_ON_KILL_SECONDS = 4.0
"""How long an operator's ``on_kill`` spends cancelling: Airflow's supervisor sends SIGKILL 5 s after SIGTERM. What is
not cancelled in time stays recorded, so a clear of the task fetches it without paying again."""


async def cancel_all(
    hook: FalQueue, references: list[RequestReference], *, budget_seconds: float | None = None
) -> dict[str, str]:
    """Cancel requests at fal in the given order, ``CANCEL_CONCURRENCY`` at a time; request id -> outcome (or the
    error text). With ``budget_seconds``, cancels not answered by then are abandoned and absent from the result."""
    gate = asyncio.Semaphore(CANCEL_CONCURRENCY)
    outcomes: dict[str, str] = {}

    async def cancel(ref: RequestReference) -> None:
        async with gate:
            try:
                outcomes[ref.request_id] = await hook.acancel(ref)
            except Sam3ProviderError as error:
                outcomes[ref.request_id] = f"cancel failed: {error}"

    tasks = [asyncio.ensure_future(cancel(ref)) for ref in references]
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=budget_seconds)
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
    return outcomes


@dataclass
class CancelReport:
    """What ``cancel_queued`` did: the cancels fal answered, the requests left running, the ones not reached."""

    cancelled: dict[str, str] = field(default_factory=dict)
    left_running: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def describe_one(self, request_id: str) -> str:
        """What happened to one request, in words (for a task that waits for one)."""
        if request_id in self.left_running:
            return (
                f"fal request {request_id} has already started and is left alone (fal bills a request once it "
                "started, cancelled or not): a clear of the task fetches its result"
            )
        return f"cancelled fal request {request_id}: {self.cancelled.get(request_id, 'no answer in time')}"

    def describe(self) -> str:
        text = (
            f"sent {len(self.cancelled)} cancels to fal for the {len(self.cancelled) + len(self.unanswered)} requests "
            "of this batch still queued there"
        )
        if self.left_running:
            text += (
                f"; {len(self.left_running)} already started were left alone (fal bills a request once it "
                f"started, cancelled or not): a clear of the task fetches them: {', '.join(self.left_running)}"
            )
        if self.unanswered:
            text += (
                f"; {len(self.unanswered)} were not cancelled in time and may still run at fal (a clear of the task "
                f"fetches them without paying again): {', '.join(self.unanswered)}"
            )
        return text


async def cancel_queued(hook: FalQueue, references: list[RequestReference], *, budget_seconds: float) -> CancelReport:
    """Cancel the requests still queued at fal (``references`` in submission order), newest first, within the
    budget. fal starts requests in queue order, so statuses are read from the head until a slice is entirely
    queued: requests running (or finished) are left alone, since fal bills a request once it started and a later
    try can still fetch its result; everything behind them is cancelled. A status that cannot be read counts as
    queued."""
    deadline = time.monotonic() + budget_seconds
    running: list[str] = []
    for start in range(0, len(references), STATUS_SLICE):
        chunk = references[start : start + STATUS_SLICE]
        calls = [hook.astatus(ref, single_attempt=True) for ref in chunk]
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*calls, return_exceptions=True), max(0.1, (deadline - time.monotonic()) / 2)
            )
        except asyncio.TimeoutError:
            break
        started = [ref.request_id for ref, a in zip(chunk, answers) if getattr(a, "state", "IN_QUEUE") != "IN_QUEUE"]
        running.extend(started)
        if all(getattr(a, "state", None) == "IN_QUEUE" for a in answers):
            break
    kept = set(running)
    queued = [ref for ref in reversed(references) if ref.request_id not in kept]
    outcomes = await cancel_all(hook, queued, budget_seconds=max(0.1, deadline - time.monotonic()))
    return CancelReport(
        cancelled=outcomes,
        left_running=running,
        unanswered=[ref.request_id for ref in queued if ref.request_id not in outcomes],
    )


async def outlasting_repeated_cancels(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end although the caller is cancelled again meanwhile. Airflow 3.3's triggerer cancels a
    killed trigger's task once more at every sync with its supervisor (about each second) until the trigger ends,
    which would cut ``on_kill`` short long before ``[triggerer] on_kill_timeout``; ``work`` bounds its own time.
    Where the caller is torn down regardless (``asyncio.wait_for`` before Python 3.12 gives up after a second
    cancel), ``work`` still runs to its end in the triggerer's loop."""
    task = asyncio.ensure_future(work)
    _OUTLIVING.add(task)
    task.add_done_callback(_OUTLIVING.discard)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():  # the work itself was cancelled
                raise
            current = asyncio.current_task()
            if current is not None and hasattr(current, "uncancel"):  # Python 3.11+: this cancel is absorbed
                current.uncancel()


def cancel_queued_in_a_thread(
    hook: FalQueue, references: list[RequestReference], *, budget_seconds: float
) -> CancelReport:
    """``cancel_queued`` on an event loop of its own, in a thread, so it works from synchronous code and from
    ``on_kill`` while the task's own loop is running; the hook is closed afterwards."""
    import threading

    report = CancelReport(unanswered=[ref.request_id for ref in references])

    async def cancel() -> None:
        nonlocal report
        try:
            report = await cancel_queued(hook, references, budget_seconds=budget_seconds)
        finally:
            await hook.aclose()

    worker = threading.Thread(target=lambda: asyncio.run(cancel()), daemon=True)
    worker.start()
    worker.join(budget_seconds + 5)
    return report
