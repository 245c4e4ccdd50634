"""A total deadline for every HTTP call: connect, headers and body together, never past the task's own deadline.

httpx's timeouts bound each step (the connect, each read of the socket), so a queue host, or a proxy in front of
it, that answers one byte a second never trips them: a ``timeout=6`` task was held 75 s and more by one status
call. Here each call is bounded as a whole: an async call by ``asyncio.wait_for``; a blocking call runs in a
thread that is given up at the deadline, its client closed (which ends the blocked read) and rebuilt for the next
call. A call cut this way raises ``FalCallDeadlineError`` (retryable: the next poll may be quick); the task's own
deadline is the caller's to enforce (it cancels the request and fails as a deadline).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from airflow_provider_sam3.exceptions import FalTransientError

__all__ = ["DOWNLOAD_CALLS", "PHASE_TIMEOUTS_FIRST", "FalCallDeadlineError", "abounded", "bounded", "call_seconds"]

T = TypeVar("T")

PHASE_TIMEOUTS_FIRST = 1.0
"""A whole call is bounded this much later than httpx's own per-phase timeouts (connect, read), so a plain timeout
is reported by httpx, naming its phase, and the bound only cuts an answer that keeps trickling in."""
DOWNLOAD_CALLS = 5
"""An output download may take this many per-call timeouts in all (outputs are up to ``max_output_bytes``)."""


class FalCallDeadlineError(FalTransientError):
    """One HTTP call took longer than its total deadline (the connection's ``request_timeout``, or what was left of
    the task's deadline) and was given up."""


def call_seconds(per_call: float, deadline: float | None = None) -> float:
    """Seconds one call may take in all: ``per_call`` (plus ``PHASE_TIMEOUTS_FIRST``), cut to what is left before
    ``deadline`` (epoch), at least a moment (a call started just before the deadline still gets an answer or a clean
    failure)."""
    whole = per_call + PHASE_TIMEOUTS_FIRST
    if deadline is None:
        return whole
    return max(0.05, min(whole, deadline - time.time()))


def _expired(what: str, seconds: float, endpoint_id: str | None, request_id: str | None) -> FalCallDeadlineError:
    return FalCallDeadlineError(
        f"{what} took longer than {seconds:.1f} s in all (connect, headers and body) and was given up; a host that "
        "answers this slowly is retried, and the task's own deadline still holds",
        endpoint_id=endpoint_id,
        request_id=request_id,
    )


def bounded(
    call: Callable[[], T],
    seconds: float,
    *,
    on_expiry: Callable[[], None],
    what: str,
    endpoint_id: str | None = None,
    request_id: str | None = None,
) -> T:
    """``call()`` (blocking) within ``seconds`` in all, or ``FalCallDeadlineError``; at the deadline ``on_expiry``
    closes the client the call uses, so its thread ends promptly instead of reading on."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread as is
            outcome["error"] = error
        finally:
            done.set()

    worker = threading.Thread(target=run, name="sam3-bounded-call", daemon=True)
    worker.start()
    if not done.wait(seconds):
        on_expiry()
        done.wait(1.0)  # the closed client makes the blocked read fail; its outcome no longer matters
        raise _expired(what, seconds, endpoint_id, request_id)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def abounded(
    call: Awaitable[T],
    seconds: float,
    *,
    what: str,
    endpoint_id: str | None = None,
    request_id: str | None = None,
) -> T:
    """``await call`` within ``seconds`` in all, or ``FalCallDeadlineError`` (the call is cancelled)."""
    try:
        return await asyncio.wait_for(call, seconds)
    except asyncio.TimeoutError:
        raise _expired(what, seconds, endpoint_id, request_id) from None
