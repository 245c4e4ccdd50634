"""Waiting for one request: a short blocking loop (a worker's ``FalHook.wait``) and a short async loop (the trigger)
that poll fal's status and follow ``PollPolicy``; everything they decide is the policy's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalDeadlineExceededError, Sam3ProviderError
from airflow_provider_sam3.hooks.backoff import MAX_FAILED_POLLS_IN_A_ROW, poll_backoff
from airflow_provider_sam3.hooks.poll_policy import PollPolicy, PollStep

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus

__all__ = ["WaitOutcome", "apoll_until_done", "poll_until_done", "request_poll_policy", "wait_for"]


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended (``step.action``: done, deadline or fail), with the last status and the last error seen."""

    step: PollStep
    status: QueueStatus | None = None
    error: Sam3ProviderError | None = None


def request_poll_policy(first: float, cap: float, deadline: float | None) -> PollPolicy:
    """The policy for one request: pauses from ``first`` up to ``cap``, a few failed polls in a row tolerated."""
    return PollPolicy(poll_backoff(first, cap), deadline=deadline, max_failures=MAX_FAILED_POLLS_IN_A_ROW)


def _step(policy: PollPolicy, status: QueueStatus | None, error: Sam3ProviderError | None, log: Any) -> PollStep:
    """The policy's answer to one poll (``status`` or ``error``), saying so in the log when a failed poll is retried."""
    if error is None:
        assert status is not None
        return policy.after_answer(time.time(), finished=status.done)
    step = policy.after_failure(time.time(), retryable=error.retryable)
    if step.action == "sleep":
        log.warning("%s; polling again (%d of %d polls in a row failed)", error, policy.failures, policy.max_failures)
    return step


def poll_until_done(
    poll: Callable[[], QueueStatus], policy: PollPolicy, *, on_status: Callable[[QueueStatus], None], log: Any
) -> WaitOutcome:
    """Blocking: ``poll()`` until the policy stops; ``on_status`` sees every status fal answered."""
    while True:
        status, error = None, None
        try:
            status = poll()
        except Sam3ProviderError as failed:
            error = failed
        else:
            on_status(status)
        step = _step(policy, status, error, log)
        if step.action != "sleep":
            return WaitOutcome(step, status, error)
        time.sleep(step.seconds)


async def apoll_until_done(
    poll: Callable[[], Awaitable[QueueStatus]],
    policy: PollPolicy,
    *,
    on_status: Callable[[QueueStatus], None],
    log: Any,
) -> WaitOutcome:
    """Async ``poll_until_done``: the same policy, awaited polls and sleeps."""
    while True:
        status, error = None, None
        try:
            status = await poll()
        except Sam3ProviderError as failed:
            error = failed
        else:
            on_status(status)
        step = _step(policy, status, error, log)
        if step.action != "sleep":
            return WaitOutcome(step, status, error)
        await asyncio.sleep(step.seconds)


def wait_for(
    hook: FalHook,
    ref: RequestReference,
    *,
    deadline: float | None,
    on_status: Callable[[QueueStatus], None] | None,
    with_logs: bool,
    poll_interval: float | None = None,
    max_poll_interval: float | None = None,
) -> QueueStatus:
    """Poll ``ref`` with ``hook`` until COMPLETED; ``FalDeadlineExceededError`` when ``deadline`` (epoch) passes. The
    intervals given win over the connection's (as in the trigger)."""
    settings = hook.get_settings()
    first = poll_interval or settings.poll_interval
    outcome = poll_until_done(
        lambda: hook.status(ref, with_logs=with_logs, deadline=deadline),
        request_poll_policy(first, max(max_poll_interval or settings.max_poll_interval, first), deadline),
        on_status=on_status or (lambda status: None),
        log=hook.log,
    )
    if outcome.step.action == "done" and outcome.status is not None:
        return outcome.status
    if outcome.step.action == "deadline":
        if outcome.error is not None:
            raise FalDeadlineExceededError(
                f"its deadline passed while fal's queue was not answering ({outcome.error})",
                endpoint_id=ref.endpoint_id,
                request_id=ref.request_id,
            ) from outcome.error
        last = outcome.status.describe() if outcome.status is not None else "waiting"
        raise FalDeadlineExceededError(
            f"still {last} when its deadline passed", endpoint_id=ref.endpoint_id, request_id=ref.request_id
        )
    assert outcome.error is not None
    raise outcome.error
