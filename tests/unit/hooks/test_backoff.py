"""Delays between retries and polls: exponential, capped, jittered within bounds, and never polling too fast."""

from __future__ import annotations

import random

import pytest

from airflow_provider_sam3.hooks.backoff import RETRY_BACKOFF, Backoff, poll_backoff
from airflow_provider_sam3.hooks.settings import MIN_POLL_INTERVAL


def test_retry_delays_grow_exponentially_up_to_the_cap_with_bounded_jitter():
    rng = random.Random(7)
    for attempt in range(12):
        base = min(RETRY_BACKOFF.first * RETRY_BACKOFF.factor**attempt, RETRY_BACKOFF.cap)
        delays = [RETRY_BACKOFF.delay(attempt, rng) for _ in range(200)]
        assert all(
            base * (1 - RETRY_BACKOFF.jitter) <= d <= min(base * (1 + RETRY_BACKOFF.jitter), RETRY_BACKOFF.cap)
            for d in delays
        )
        assert len(set(delays)) > 50  # jittered: many workers retrying together spread out
    assert max(RETRY_BACKOFF.delay(30, rng) for _ in range(100)) <= RETRY_BACKOFF.cap


def test_without_jitter_the_delays_are_exact():
    backoff = Backoff(first=0.5, factor=3.0, cap=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.5, 4.5, 10.0, 10.0]


@pytest.mark.parametrize("asked", [0.0, 0.01, 0.1])
def test_polling_never_starts_below_the_floor(asked):
    backoff = poll_backoff(asked, 30)
    assert backoff.first == MIN_POLL_INTERVAL
    assert min(backoff.delay(0) for _ in range(200)) >= MIN_POLL_INTERVAL * (1 - backoff.jitter)


def test_polling_slows_down_to_its_cap():
    backoff = poll_backoff(2.0, 30.0)
    delays = [backoff.delay(n, random.Random(n)) for n in range(20)]
    assert delays[0] < 2.3 and delays[-1] == pytest.approx(30.0, rel=0.11) and max(delays) <= 30.0
    assert poll_backoff(5.0, 1.0).cap == 5.0  # a cap below the start is the start
