"""The decisions of the hook's retry loops, the same for its sync and async calls: how long each attempt may take,
whether to try again, and after what pause. Only the driving loops (blocking or awaited) are written twice."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalStartTimeoutError, Sam3ProviderError
from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.backoff import RETRY_BACKOFF
from airflow_provider_sam3.hooks.deadlines import PHASE_TIMEOUTS_FIRST, FalCallDeadlineError, call_seconds
from airflow_provider_sam3.hooks.errors import translate_scrubbed
from airflow_provider_sam3.hooks.queue_requests import raise_mapped
from airflow_provider_sam3.hooks.submit import attempt_timeout, lease_ended, submit_retry_delay, submitted_reference

if TYPE_CHECKING:
    from airflow_provider_sam3.guards.text import Scrubber
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = ["CallRetries", "SubmitAttempts"]


@dataclass
class CallRetries:
    """One status, result or cancel call's attempts: at most ``attempts``, each bounded in all by ``seconds()``
    (``hooks.deadlines``), none started past ``deadline`` (epoch). Only faults fal-client has not already retried
    are retried here (its own loop would multiply them into minutes of calls)."""

    action: str
    ref: RequestReference
    attempts: int
    per_call: float
    deadline: float | None
    scrubber: Scrubber
    log: Any
    attempt: int = 0

    def seconds(self) -> float:
        """How long the next attempt may take in all."""
        return call_seconds(self.per_call, self.deadline)

    def pause_after(self, error: Exception) -> float:
        """The pause before trying again after ``error``; raises the mapped error when the call is not retried: not
        worth it, no attempt left, or the pause would end past the deadline."""
        ref = self.ref
        mapped = translate_scrubbed(
            error, self.scrubber, endpoint_id=ref.endpoint_id, request_id=ref.request_id, action=self.action
        )
        if not _worth_retrying(mapped, error) or self.attempt + 1 >= self.attempts:
            raise_mapped(mapped, error)
        delay = RETRY_BACKOFF.delay(self.attempt)
        self.log.warning(
            "%s; retrying %s in %.1f s (attempt %d of %d)", mapped, self.action, delay, self.attempt + 2, self.attempts
        )
        if self.deadline is not None and time.time() + delay >= self.deadline:
            raise_mapped(mapped, error)
        self.attempt += 1
        return delay


def _worth_retrying(mapped: Sam3ProviderError, error: BaseException) -> bool:
    """Whether the hook should make the same call again: it may succeed soon, and fal-client has not already made it
    ``MAX_ATTEMPTS`` times (429, fal's edge 502/503/504, timeouts and transport errors), which retrying again would
    multiply into minutes of calls. A start timeout is retryable by resubmitting, but it is the request's final
    answer: fetching its result again returns the same 504."""
    if internals.fal_retries(error):
        return False
    return mapped.retryable and not isinstance(mapped, FalStartTimeoutError)


@dataclass
class SubmitAttempts:
    """One submit's attempts: its POST, each attempt's timeout (cut to the reservation's ``deadline``), and whether a
    failed attempt is sent again: only when fal certainly created nothing (``submit.submit_fault``), so a submit
    never pays twice."""

    endpoint_id: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    queue_host: str
    per_call: float
    deadline: float | None
    max_delay: float
    scrubber: Scrubber
    log: Any
    attempt: int = 1

    def timeout(self) -> float:
        """The next attempt's timeout; raises when the deadline has passed (no attempt starts: nothing was created)."""
        return attempt_timeout(self.endpoint_id, self.per_call, self.deadline)

    @staticmethod
    def bound(timeout: float) -> float:
        """The whole attempt's bound (``hooks.deadlines``): httpx's own timeouts, naming their phase, come first."""
        return timeout + PHASE_TIMEOUTS_FIRST

    def post(self, timeout: float) -> dict[str, Any]:
        """The POST's keywords for fal-client's request; never redirected: it goes to the checked host only."""
        return {"json": self.body, "timeout": timeout, "headers": self.headers, "follow_redirects": False}

    def pause_after(self, error: Exception) -> float:
        """The pause before sending the POST again after ``error``; raises when it must not be resent (fal may have
        created the request, or refused it for good)."""
        if isinstance(error, FalCallDeadlineError):  # the body may have reached fal: never sent again
            raise lease_ended(self.endpoint_id, error) from error
        delay = submit_retry_delay(
            self.log, self.endpoint_id, error, self.attempt, max_delay=self.max_delay, scrubber=self.scrubber
        )
        self.attempt += 1
        return delay

    def reference(self, response: Any) -> RequestReference:
        """The accepted submit's reference, checked (``submit.submitted_reference``)."""
        return submitted_reference(self.endpoint_id, response, self.queue_host, self.scrubber)
