"""Waiting for a batch's requests at fal: status rounds that follow fal's queue order, and cancels.

Requests leave fal's queue in order, so each round polls in submission order and stops at the first slice that is
entirely still queued, plus one rotating slice further down to catch out-of-order finishes. A throttled answer (429)
ends the round at once: the next round comes after the backoff, so a throttled account costs a few calls a round,
not one per waiting request. Used by ``FalBatchTrigger`` in the triggerer and by the batch engine on the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.batch.cancels import cancel_all
from airflow_provider_sam3.exceptions import (
    FalAuthenticationError,
    FalRateLimitedError,
    FalRequestNotFoundError,
    Sam3ProviderError,
)
from airflow_provider_sam3.hooks.backoff import Backoff, poll_backoff
from airflow_provider_sam3.hooks.poll_policy import PollPolicy, throttled_pause
from airflow_provider_sam3.models.reference import RequestReference

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.ports import FalQueue
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = [
    "BATCH_POLL_INTERVAL",
    "BatchPoller",
    "MAX_BATCH_POLL_INTERVAL",
    "MAX_FAILED_ROUNDS",
    "MAX_THROTTLED_PAUSE",
    "POLL_CONCURRENCY",
    "PROGRESS_EVERY_SECONDS",
    "THROTTLED_BACKOFF",
    "ProgressLine",
    "entry_reference",
    "explicit_urls",
    "reference_for",
    "url_templates_of",
]

POLL_CONCURRENCY = 8
"""Status calls in flight at once; also the size of the slices a round polls (more only adds client overhead:
measured on loopback, 8 concurrent calls answer faster in total than 16)."""
BATCH_POLL_INTERVAL = 1.0
"""A round polls a few dozen requests however large the batch, so it can come often."""
MAX_BATCH_POLL_INTERVAL = 5.0
"""A batch always has something about to finish: its rounds never back off further than this."""
PROGRESS_EVERY_SECONDS = 15.0
MAX_THROTTLED_PAUSE = 60.0
"""Longest pause between status rounds while fal keeps answering 429."""
THROTTLED_BACKOFF = Backoff(first=BATCH_POLL_INTERVAL, factor=2.0, cap=MAX_THROTTLED_PAUSE, jitter=0.0)
"""The least pause after ``n`` rounds in a row that fal answered 429: ``BATCH_POLL_INTERVAL * 2**n``, capped."""
MAX_FAILED_ROUNDS = 20
"""Rounds in a row in which every status call failed before the trigger gives up (fal unreachable)."""


def reference_for(
    request_id: str,
    endpoint_id: str,
    url_templates: dict[str, str],
    explicit_urls: dict[str, dict[str, str]] | None = None,
) -> RequestReference:
    """A request's reference from the batch's URL templates (``.../requests/{request_id}/status``), or from its
    own URLs when fal gave it URLs of another shape (kept in ``explicit_urls``)."""
    # Any: mypy cannot tell these keys (the three URLs) from RequestReference's float submitted_at
    urls: dict[str, Any] = (explicit_urls or {}).get(request_id) or {
        name: template.replace("{request_id}", request_id) for name, template in url_templates.items()
    }
    return RequestReference(endpoint_id=endpoint_id, request_id=request_id, **urls)


def entry_reference(state: BatchState, entry: BatchEntry) -> RequestReference:
    """The reference of a batch entry's request: from the batch's URL templates, or the entry's own URLs."""
    from airflow_provider_sam3.models.batch import request_id_of

    request_id = request_id_of(entry)
    explicit = {request_id: entry.urls} if entry.urls else None
    return reference_for(request_id, state.endpoint_id, state.url_templates or {}, explicit)


def explicit_urls(state: BatchState, request_ids: list[str]) -> dict[str, dict[str, str]]:
    """The URLs of these requests when they do not follow the batch's templates."""
    wanted = set(request_ids)
    return {e.request_id: e.urls for e in state.entries.values() if e.urls and e.request_id in wanted}


def url_templates_of(reference: RequestReference) -> dict[str, str]:
    """The URL templates a reference follows (its request id replaced by ``{request_id}``)."""
    return {
        name: getattr(reference, name).replace(reference.request_id, "{request_id}")
        for name in ("status_url", "response_url", "cancel_url")
    }


class ProgressLine:
    """Counts for the progress line in the task log: done / failed / waiting, and an ETA from the recent rate."""

    def __init__(self, total: int, done_before: int, failed_before: int, endpoint_id: str) -> None:
        self.total, self.done_before, self.failed_before = total, done_before, failed_before
        self.endpoint_id = endpoint_id
        self.started = time.monotonic()
        self.last_logged = self.started

    def due(self) -> bool:
        return time.monotonic() - self.last_logged >= PROGRESS_EVERY_SECONDS

    def describe(self, finished: int, failed: int, running: int, waiting: int) -> str:
        self.last_logged = time.monotonic()
        elapsed = self.last_logged - self.started
        done = self.done_before + finished - failed
        eta = f"{waiting * elapsed / finished:.0f} s" if finished and waiting else "unknown" if waiting else "0 s"
        return (
            f"batch on {self.endpoint_id}: {done} done, {self.failed_before + failed} failed or invalid, "
            f"{waiting} waiting at fal ({running} running, {waiting - running} queued) of {self.total} images; "
            f"ETA {eta}"
        )


class BatchPoller:
    """Polls a batch's requests until all finished, ``fire_at`` finished, or the deadline (async, no blocking)."""

    def __init__(
        self,
        hook: FalQueue,
        endpoint_id: str,
        url_templates: dict[str, str],
        request_ids: list[str],
        *,
        explicit_urls: dict[str, dict[str, str]] | None = None,
        deadline: float | None,
        poll_interval: float | None,
        max_poll_interval: float | None,
        fire_at: int | None,
        progress: ProgressLine,
        log: Any,
    ) -> None:
        self.hook = hook
        self.endpoint_id = endpoint_id
        self.url_templates = url_templates
        self.waiting: list[str] = list(request_ids)
        self.explicit_urls = dict(explicit_urls or {})
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.fire_at = fire_at if fire_at and fire_at > 0 else None
        self.progress = progress
        self.log = log
        self.finished: dict[str, list[Any]] = {}
        self.failed = 0
        self.running = 0
        self.status_calls = 0
        self.finished_count = 0
        self.first_poll: float | None = None
        self._head_all_queued = False
        self.throttled = False
        self.throttled_rounds = 0

    def interval(self, round_number: int) -> float:
        """The pause between rounds polled from the worker: the batch's interval, lengthened after throttled
        rounds."""
        return self.throttle_pause(self.poll_interval or BATCH_POLL_INTERVAL)

    def throttle_pause(self, pause: float) -> float:
        """``pause``, lengthened after rounds in a row that fal answered 429 (doubling, up to
        ``MAX_THROTTLED_PAUSE``)."""
        return throttled_pause(pause, THROTTLED_BACKOFF, self.throttled_rounds)

    def add(self, request_ids: list[str]) -> None:
        """More requests to wait for (the worker adds them as it submits)."""
        self.waiting.extend(request_ids)

    def take_finished(self) -> dict[str, list[Any]]:
        """The requests that finished since the last call, by id: ``[error, error_type, inference_seconds]``."""
        finished, self.finished = self.finished, {}
        return finished

    def rate(self) -> float | None:
        """Requests finished per second since polling began, once there is something to go by."""
        if self.first_poll is None or self.finished_count < 2:
            return None
        elapsed = time.monotonic() - self.first_poll
        return self.finished_count / elapsed if elapsed > 0 else None

    def _ref(self, request_id: str) -> RequestReference:
        return reference_for(request_id, self.endpoint_id, self.url_templates, self.explicit_urls)

    async def _status(self, request_id: str) -> Any:
        self.status_calls += 1
        try:
            return await self.hook.astatus(self._ref(request_id), single_attempt=True)
        except Sam3ProviderError as error:
            return error

    async def policy(self) -> PollPolicy:
        """The batch's poll policy: short rounds (it always has something about to finish), a backoff that starts
        again whenever requests finished, longer pauses while throttled, ``MAX_FAILED_ROUNDS`` unanswered rounds."""
        settings = await self.hook.aget_settings()
        first = self.poll_interval or min(settings.poll_interval, BATCH_POLL_INTERVAL)
        cap = max(first, min(self.max_poll_interval or settings.max_poll_interval, MAX_BATCH_POLL_INTERVAL))
        return PollPolicy(
            poll_backoff(first, cap), deadline=self.deadline, max_failures=MAX_FAILED_ROUNDS, throttle=THROTTLED_BACKOFF
        )

    async def run(self) -> dict[str, Any]:
        policy = await self.policy()
        round_number = 0
        while self.waiting:
            before = len(self.finished)
            answered, fatal = await self.poll_once(round_number)
            round_number += 1
            if fatal is not None:
                return self._event("error", message=str(fatal), error_class=type(fatal).__name__)
            if self.progress.due():
                self.log.info(self.progress.describe(len(self.finished), self.failed, self.running, len(self.waiting)))
            if not self.waiting:
                break
            if self.fire_at is not None and len(self.finished) >= self.fire_at:
                return self._event("progress")
            if answered or self.throttled:
                progressed = len(self.finished) > before
                step = policy.after_answer(
                    time.time(), finished=False, progressed=progressed, throttled_rounds=self.throttled_rounds
                )
            else:
                step = policy.after_failure(time.time())
            if step.action == "fail":
                return self._event(
                    "error",
                    message=f"fal did not answer {policy.failures} rounds of status calls in "
                    "a row; the requests are still recorded and a retry reattaches",
                )
            if step.action == "deadline":
                return await self._cancel_rest()
            await asyncio.sleep(step.seconds)
        self.log.info(self.progress.describe(len(self.finished), self.failed, 0, 0))
        return self._event("finished")

    def _slices(self, round_number: int) -> Iterator[tuple[int, int]]:
        """The slices of ``waiting`` a round polls: from the head on, then one rotating slice further down."""
        size = len(self.waiting)
        head = 0
        while head < size:
            yield head, min(head + POLL_CONCURRENCY, size)
            head += POLL_CONCURRENCY
            if self._head_all_queued:
                break
        rest = size - head
        if rest > 0:
            start = head + (round_number * POLL_CONCURRENCY) % rest
            yield start, min(start + POLL_CONCURRENCY, size)

    async def poll_once(self, round_number: int) -> tuple[int, Sam3ProviderError | None]:
        """One round: poll the head of the queue and one slice beyond (stopping early once ``fire_at`` requests
        have finished); return how many calls were answered, and an error that ends the wait."""
        if self.first_poll is None:
            self.first_poll = time.monotonic()
        answered, running = 0, 0
        done_ids: set[str] = set()
        self._head_all_queued = False
        self.throttled = False
        for start, end in self._slices(round_number):
            if self.throttled:  # fal said 429: the rest of the round would be refused too
                break
            if self.fire_at is not None and len(self.finished) >= self.fire_at:
                break
            chunk = self.waiting[start:end]
            answers = await asyncio.gather(*(self._status(rid) for rid in chunk))
            all_queued = True
            for rid, answer in zip(chunk, answers):
                if isinstance(answer, FalAuthenticationError):
                    return answered, answer
                if isinstance(answer, FalRequestNotFoundError):
                    answered += 1
                    done_ids.add(rid)
                    self._finish(
                        rid, f"fal no longer knows request {rid} (expired or vanished)", "FalRequestNotFoundError", None
                    )
                    continue
                if isinstance(answer, FalRateLimitedError):
                    self.throttled = True
                if isinstance(answer, Sam3ProviderError):
                    all_queued = False
                    continue
                answered += 1
                if answer.done:
                    done_ids.add(rid)
                    self._finish(rid, answer.error, answer.error_type, (answer.metrics or {}).get("inference_time"))
                    all_queued = False
                elif answer.state == "IN_PROGRESS":
                    running += 1
                    all_queued = False
            self._head_all_queued = all_queued
        if done_ids:
            self.waiting = [rid for rid in self.waiting if rid not in done_ids]
        self.running = running
        self.throttled_rounds = self.throttled_rounds + 1 if self.throttled else 0
        return answered, None

    def _finish(self, request_id: str, error: str | None, error_type: str | None, inference: Any) -> None:
        self.finished[request_id] = [error, error_type, inference]
        self.finished_count += 1
        if error:
            self.failed += 1

    async def _cancel_rest(self) -> dict[str, Any]:
        outcomes = await cancel_all(self.hook, [self._ref(rid) for rid in self.waiting])
        message = (
            f"the batch's deadline passed with {len(self.waiting)} requests still waiting at fal; they were cancelled"
        )
        self.log.warning(message)
        return self._event("timeout", message=message, cancelled=outcomes)

    def _event(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "status": status,
            "finished": self.finished,
            "status_calls": self.status_calls,
            "rate": self.rate(),
            **extra,
        }
