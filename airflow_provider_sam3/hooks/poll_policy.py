"""When to poll fal again and when to stop: one pure policy for every wait (a worker's ``FalHook.wait``, the
single-request trigger, a batch's status rounds). It does no I/O and reads no clock: callers pass the time, so
its decisions are tested without sleeping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from airflow_provider_sam3.hooks.backoff import Backoff

__all__ = ["PollPolicy", "PollStep", "throttled_pause"]


def throttled_pause(pause: float, throttle: Backoff | None, throttled_rounds: int) -> float:
    """``pause``, lengthened to at least ``throttle.delay(n)`` after ``n`` rounds in a row that fal answered 429."""
    if throttle is None or not throttled_rounds:
        return pause
    return max(pause, throttle.delay(throttled_rounds))


@dataclass(frozen=True)
class PollStep:
    """What to do after one poll: ``sleep`` ``seconds`` then poll again, or stop because the wait is ``done``,
    its ``deadline`` passed, or it must ``fail`` (a final error, or too many failed polls in a row)."""

    action: Literal["sleep", "done", "deadline", "fail"]
    seconds: float = 0.0


class PollPolicy:
    """Backoff between polls, a deadline (epoch seconds), and failed polls tolerated in a row.

    :param backoff: the pause before poll ``n + 1`` when nothing moved; it starts again from the first pause after
        a poll that made progress (a batch round in which requests finished).
    :param deadline: absolute epoch seconds, or ``None``; no pause runs past it.
    :param max_failures: polls in a row that fal did not answer before the wait fails.
    :param throttle: after ``n`` rounds in a row that fal answered 429, the pause is at least ``throttle.delay(n)``.
    """

    def __init__(
        self, backoff: Backoff, *, deadline: float | None, max_failures: int, throttle: Backoff | None = None
    ) -> None:
        self.backoff = backoff
        self.deadline = deadline
        self.max_failures = max_failures
        self.throttle = throttle
        self.failures = 0
        self._attempt = 0

    def after_failure(self, now: float, *, retryable: bool = True) -> PollStep:
        """fal did not answer this poll (or refused it with a final error)."""
        if self.deadline is not None and now >= self.deadline:  # a call cut at the deadline
            return PollStep("deadline")
        self.failures += 1
        if not retryable or self.failures >= self.max_failures:
            return PollStep("fail")
        return self._pause(now)

    def after_answer(
        self, now: float, *, finished: bool, progressed: bool = False, throttled_rounds: int = 0
    ) -> PollStep:
        """fal answered: ``finished`` ends the wait; ``progressed`` (something finished) restarts the backoff;
        ``throttled_rounds`` (rounds in a row in which fal answered 429) lengthens the next pause."""
        self.failures = 0
        if finished:
            return PollStep("done")
        if progressed:
            self._attempt = 0
        return self._pause(now, throttled_rounds)

    def _pause(self, now: float, throttled_rounds: int = 0) -> PollStep:
        pause = throttled_pause(self.backoff.delay(self._attempt), self.throttle, throttled_rounds)
        self._attempt += 1
        if self.deadline is not None:
            left = self.deadline - now
            if left <= 0:
                return PollStep("deadline")
            pause = min(pause, left)
        return PollStep("sleep", pause)
