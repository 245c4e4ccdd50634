"""FalRequestTrigger: waits in the triggerer for one fal request, without holding a worker.

Async only; kwargs are JSON primitives; the deadline is an absolute epoch time (a relative one would restart
after a triggerer restart); polling backs off; fal's logs reach the task log in bounded form; a deadline that
passes cancels the remote request, and so does clearing or marking the task (``on_kill``), unless the waiting
task does not own the request (``cancel_on_stop=False``, the sensor's default).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import TriggerEvent

from airflow_provider_sam3.batch.cancels import TRIGGER_ON_KILL_SECONDS, cancel_queued, outlasting_repeated_cancels
from airflow_provider_sam3.exceptions import Sam3ProviderError
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.hooks.status_polling import apoll_until_done, request_poll_policy
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.status import QueueStatus
from airflow_provider_sam3.triggers.base import ConstructorSerializedTrigger

__all__ = ["FalRequestTrigger", "MAX_LOG_LINES_PER_POLL", "MAX_LOG_MESSAGE_CHARS", "error_event", "forward_new_logs"]

MAX_LOG_LINES_PER_POLL = 20
MAX_LOG_MESSAGE_CHARS = 300


def forward_new_logs(log: Any, status: QueueStatus, already_seen: int, request_id: str) -> int:
    """Write fal's log lines that were not written yet, a bounded number per poll, each cut short; return the count."""
    entries = status.logs or []
    fresh = entries[already_seen:]
    for entry in fresh[:MAX_LOG_LINES_PER_POLL]:
        message = str(entry.get("message", "")) if isinstance(entry, dict) else str(entry)
        if len(message) > MAX_LOG_MESSAGE_CHARS:
            message = message[: MAX_LOG_MESSAGE_CHARS - 3] + "..."
        log.info("fal %s [%s] %s", request_id, entry.get("level", "INFO") if isinstance(entry, dict) else "", message)
    if len(fresh) > MAX_LOG_LINES_PER_POLL:
        log.info("fal %s: %d more log lines not shown", request_id, len(fresh) - MAX_LOG_LINES_PER_POLL)
    return len(entries)


def error_event(reference: dict[str, Any], error: Sam3ProviderError) -> dict[str, Any]:
    """A trigger event describing a failure, in JSON primitives."""
    return {
        "status": "error",
        "reference": reference,
        "message": str(error),
        "error_class": type(error).__name__,
        "retryable": bool(error.retryable),
    }


class FalRequestTrigger(ConstructorSerializedTrigger):
    """Polls one request until fal reports it COMPLETED, or its deadline passes.

    Events (JSON): ``{"status": "completed", "reference", "error", "error_type", "metrics"}``,
    ``{"status": "timeout", "reference", "message", "cancel"}`` or ``{"status": "error", ...}`` (see ``error_event``).
    ``echo`` is returned untouched in every event, so the resumed task gets back what it needs without a lookup.
    ``cancel_on_stop`` cancels the request at fal when the deadline passes or the task is cleared or marked; a task
    waiting for a request it did not submit turns it off, so the request stays for whoever owns it.
    """

    def __init__(
        self,
        reference: dict[str, Any],
        fal_conn_id: str = FalHook.default_conn_name,
        deadline: float | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        forward_logs: bool = True,
        echo: dict[str, Any] | None = None,
        cancel_on_stop: bool = True,
    ) -> None:
        super().__init__()
        self.reference = dict(reference)
        self.fal_conn_id = fal_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.forward_logs = forward_logs
        self.echo = echo or {}
        self.cancel_on_stop = cancel_on_stop

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ref = RequestReference.from_dict(self.reference)
        hook = FalHook(self.fal_conn_id)
        try:
            event = await self._wait(hook, ref)
        finally:
            await asyncio.shield(hook.aclose())
        yield TriggerEvent({**event, "echo": self.echo})

    async def _wait(self, hook: FalHook, ref: RequestReference) -> dict[str, Any]:
        settings = await hook.aget_settings()
        policy = request_poll_policy(
            self.poll_interval or settings.poll_interval,
            self.max_poll_interval or settings.max_poll_interval,
            self.deadline,
        )
        seen: dict[str, Any] = {"logs": 0, "state": None}

        def on_status(status: QueueStatus) -> None:
            if status.state != seen["state"]:
                self.log.info("fal %s request %s: %s", ref.endpoint_id, ref.request_id, status.describe())
                seen["state"] = status.state
            if self.forward_logs:
                seen["logs"] = forward_new_logs(self.log, status, seen["logs"], ref.request_id)

        outcome = await apoll_until_done(
            lambda: hook.astatus(ref, with_logs=self.forward_logs, deadline=self.deadline),
            policy,
            on_status=on_status,
            log=self.log,
        )
        if outcome.step.action == "done" and outcome.status is not None:
            status = outcome.status
            return {
                "status": "completed",
                "reference": self.reference,
                "error": status.error,
                "error_type": status.error_type,
                "metrics": status.metrics or {},
            }
        if outcome.step.action == "deadline":
            if outcome.error is not None:
                return await self._cancel_at_deadline(
                    hook, ref, f"unknown: fal's queue was not answering ({outcome.error})"
                )
            last = outcome.status.describe() if outcome.status is not None else "waiting"
            return await self._cancel_at_deadline(hook, ref, f"still {last}")
        assert outcome.error is not None
        return error_event(self.reference, outcome.error)

    async def _cancel_at_deadline(self, hook: FalHook, ref: RequestReference, state: str) -> dict[str, Any]:
        """Cancel (when this trigger owns the request) and describe ``ref`` at its deadline; ``state`` says what was
        last known of it."""
        if not self.cancel_on_stop:
            outcome = "not cancelled: left running for the task that submitted it"
        else:
            try:
                outcome = await hook.acancel(ref)
            except Sam3ProviderError as error:
                outcome = f"cancel failed: {error}"
        message = f"was {state} when its deadline passed; cancel at fal: {outcome}"
        self.log.warning("%s request %s %s", ref.endpoint_id, ref.request_id, message)
        return {"status": "timeout", "reference": self.reference, "message": message, "cancel": outcome}

    async def on_kill(self) -> None:
        """The task was cleared or marked by a user: cancel the request if it is still queued at fal. One already
        running is billed whatever happens, so it is left to finish: a clear of the task reattaches to it."""
        ref = RequestReference.from_dict(self.reference)
        if not self.cancel_on_stop:
            self.log.info(
                "Task was cleared or marked; fal request %s is left running for the task that submitted it",
                ref.request_id,
            )
            return
        await outlasting_repeated_cancels(self._cancel_if_queued(ref))

    async def _cancel_if_queued(self, ref: RequestReference) -> None:
        hook = FalHook(self.fal_conn_id)
        try:
            report = await cancel_queued(hook, [ref], budget_seconds=TRIGGER_ON_KILL_SECONDS)
            self.log.info("Task was cleared or marked; %s", report.describe_one(ref.request_id))
        finally:
            await hook.aclose()
