"""Waiting for one request on a worker (``FalHook.wait``): status polls that back off, a deadline, and a few failed
polls in a row tolerated before giving up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_provider_sam3.exceptions import FalDeadlineExceededError, Sam3ProviderError
from airflow_provider_sam3.hooks.backoff import MAX_FAILED_POLLS_IN_A_ROW, poll_backoff

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus

__all__ = ["wait_for"]


def wait_for(
    hook: FalHook,
    ref: RequestReference,
    *,
    deadline: float | None,
    on_status: Callable[[QueueStatus], None] | None,
    with_logs: bool,
) -> QueueStatus:
    """Poll ``ref`` with ``hook`` until COMPLETED; ``FalDeadlineExceededError`` when ``deadline`` (epoch) passes."""
    settings = hook.get_settings()
    backoff = poll_backoff(settings.poll_interval, settings.max_poll_interval)
    attempt, failed_polls = 0, 0
    while True:
        try:
            status = hook.status(ref, with_logs=with_logs, deadline=deadline)
        except Sam3ProviderError as error:
            failed_polls += 1
            if deadline is not None and time.time() >= deadline:  # a call cut at the task's deadline
                raise FalDeadlineExceededError(
                    f"its deadline passed while fal's queue was not answering ({error})",
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                ) from error
            if not error.retryable or failed_polls >= MAX_FAILED_POLLS_IN_A_ROW:
                raise
            hook.log.warning(
                "%s; polling again (%d of %d polls in a row failed)", error, failed_polls, MAX_FAILED_POLLS_IN_A_ROW
            )
            time.sleep(backoff.delay(attempt))
            attempt += 1
            continue
        failed_polls = 0
        if on_status is not None:
            on_status(status)
        if status.done:
            return status
        pause = backoff.delay(attempt)
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0:
                raise FalDeadlineExceededError(
                    f"still {status.describe()} when its deadline passed",
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                )
            pause = min(pause, left)
        time.sleep(pause)
        attempt += 1
