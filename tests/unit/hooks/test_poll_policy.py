"""The one poll policy every wait follows: its pauses, its deadline and its patience, decided from the time it is
given (no sleeping, no clock)."""

from __future__ import annotations

import pytest

from airflow_provider_sam3.hooks.backoff import Backoff
from airflow_provider_sam3.hooks.poll_policy import PollPolicy, PollStep, throttled_pause

STEADY = Backoff(first=1.0, factor=2.0, cap=8.0, jitter=0.0)
THROTTLE = Backoff(first=1.0, factor=2.0, cap=60.0, jitter=0.0)


def test_pauses_back_off_to_the_cap_while_nothing_finishes():
    policy = PollPolicy(STEADY, deadline=None, max_failures=3)
    pauses = [policy.after_answer(0.0, finished=False).seconds for _ in range(6)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_finished_request_ends_the_wait_even_past_its_deadline():
    policy = PollPolicy(STEADY, deadline=100.0, max_failures=3)
    assert policy.after_answer(500.0, finished=True) == PollStep("done")


def test_progress_restarts_the_backoff():
    policy = PollPolicy(STEADY, deadline=None, max_failures=3)
    for _ in range(3):
        policy.after_answer(0.0, finished=False)
    assert policy.after_answer(0.0, finished=False, progressed=True).seconds == 1.0
    assert policy.after_answer(0.0, finished=False).seconds == 2.0


def test_no_pause_runs_past_the_deadline_and_the_deadline_ends_the_wait():
    policy = PollPolicy(STEADY, deadline=10.0, max_failures=3)
    assert policy.after_answer(9.75, finished=False) == PollStep("sleep", 0.25)
    assert policy.after_answer(10.0, finished=False) == PollStep("deadline")


def test_failed_polls_are_tolerated_up_to_the_limit_and_an_answer_resets_the_count():
    policy = PollPolicy(STEADY, deadline=None, max_failures=3)
    assert [policy.after_failure(0.0).action for _ in range(2)] == ["sleep", "sleep"]
    policy.after_answer(0.0, finished=False)
    assert [policy.after_failure(0.0).action for _ in range(3)] == ["sleep", "sleep", "fail"]
    assert policy.failures == 3


def test_a_final_error_fails_at_once_and_a_failure_at_the_deadline_is_the_deadline():
    assert PollPolicy(STEADY, deadline=None, max_failures=5).after_failure(0.0, retryable=False).action == "fail"
    late = PollPolicy(STEADY, deadline=10.0, max_failures=5)
    assert late.after_failure(10.0, retryable=False).action == "deadline"
    assert late.failures == 0


@pytest.mark.parametrize(("rounds", "expected"), [(0, 1.0), (1, 2.0), (3, 8.0), (9, 60.0)])
def test_throttled_rounds_lengthen_the_pause_doubling_up_to_its_cap(rounds, expected):
    assert throttled_pause(1.0, THROTTLE, rounds) == expected
    policy = PollPolicy(
        Backoff(first=1.0, factor=1.0, cap=1.0, jitter=0.0), deadline=None, max_failures=3, throttle=THROTTLE
    )
    assert policy.after_answer(0.0, finished=False, throttled_rounds=rounds).seconds == expected


def test_a_throttled_pause_still_ends_at_the_deadline():
    policy = PollPolicy(STEADY, deadline=5.0, max_failures=3, throttle=THROTTLE)
    assert policy.after_answer(4.0, finished=False, throttled_rounds=6) == PollStep("sleep", 1.0)
