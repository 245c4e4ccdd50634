"""Delays between attempts: capped exponential backoff with jitter, for retries and for status polling."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "MAX_FAILED_POLLS_IN_A_ROW", "RETRY_ATTEMPTS", "RETRY_BACKOFF", "poll_backoff"]


@dataclass(frozen=True)
class Backoff:
    """``first * factor**n`` seconds, capped at ``cap``, each multiplied by a jitter in [1 - jitter, 1 + jitter]."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        base = min(self.first * self.factor**attempt, self.cap)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter) if self.jitter else 1.0
        return min(base * spread, self.cap)


RETRY_BACKOFF = Backoff(first=1.0, factor=2.0, cap=30.0, jitter=0.5)
"""Hook-level retries of transient faults that fal-client itself does not retry."""
RETRY_ATTEMPTS = 5
MAX_FAILED_POLLS_IN_A_ROW = 5
"""A status poll that fails transiently (after fal-client's own retries) is tried again at the next poll; this many
in a row end the wait with the error, and the task's retry reattaches to the same request."""


def poll_backoff(first: float, cap: float) -> Backoff:
    """Status polling: start at ``first`` and slow down by half each time, up to ``cap``; never from below
    ``MIN_POLL_INTERVAL`` (fal-client's own 0.1 s would poll a long queue hundreds of times per request)."""
    from airflow_provider_sam3.hooks.settings import MIN_POLL_INTERVAL

    first = max(first, MIN_POLL_INTERVAL)
    return Backoff(first=first, factor=1.5, cap=max(cap, first), jitter=0.1)
