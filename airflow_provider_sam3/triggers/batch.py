"""FalBatchTrigger: one trigger waits for a whole batch of fal requests.

The trigger never submits (a rebuilt trigger must not pay twice): the batch operator submits and persists every
request id, then hands the ids to this trigger, at most ``max_in_flight`` of them, so its kwargs stay a few KB
whatever the batch size (``trigger.kwargs`` is a 64 KB TEXT column on MySQL). It polls them as
``batch.polling.BatchPoller`` does and fires when every request has finished, when enough have finished for the
operator to do something useful with them (``fire_at``), or at the deadline (after cancelling what is left at fal).

Events (JSON): ``{"status": "finished"|"progress"|"timeout"|"error", "finished": {request_id: [error,
error_type, inference_seconds]}, "cancelled": {request_id: outcome}, "rate": finished per second, "message": str}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sam3.batch.cancels import TRIGGER_ON_KILL_SECONDS, cancel_queued, outlasting_repeated_cancels
from airflow_provider_sam3.batch.polling import BatchPoller, ProgressLine, reference_for
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.triggers.base import ConstructorSerializedTrigger

__all__ = ["FalBatchTrigger", "kwargs_size"]


def kwargs_size(trigger: BaseTrigger) -> int:
    """Bytes of the trigger's kwargs as JSON (before Airflow's encryption, which adds about a third)."""
    return len(json.dumps(trigger.serialize()[1], separators=(",", ":")))


class FalBatchTrigger(ConstructorSerializedTrigger):
    """Waits in the triggerer for many fal requests of one endpoint (see the module docstring for events).

    :param request_ids: the requests to wait for, in submission order (fal's queue order).
    :param url_templates: ``status_url``/``response_url``/``cancel_url`` with ``{request_id}`` in place of the id.
    :param deadline: absolute epoch seconds; requests still waiting then are cancelled.
    :param fire_at: fire early once this many requests have finished (the operator then copies their outputs
        and submits more); ``None`` waits for all.
    :param progress: ``{"total", "done", "failed"}`` of the whole batch, for the progress line.
    """

    def __init__(
        self,
        endpoint_id: str,
        url_templates: dict[str, str],
        request_ids: list[str],
        fal_conn_id: str = FalHook.default_conn_name,
        deadline: float | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        fire_at: int | None = None,
        progress: dict[str, int] | None = None,
        explicit_urls: dict[str, dict[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.explicit_urls = dict(explicit_urls or {})
        self.endpoint_id = endpoint_id
        self.url_templates = dict(url_templates)
        self.request_ids = list(request_ids)
        self.fal_conn_id = fal_conn_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.fire_at = fire_at
        self.progress = dict(progress or {})

    def poller(self, hook: FalHook) -> BatchPoller:
        progress = ProgressLine(
            self.progress.get("total", len(self.request_ids)),
            self.progress.get("done", 0),
            self.progress.get("failed", 0),
            self.endpoint_id,
        )
        return BatchPoller(
            hook,
            self.endpoint_id,
            self.url_templates,
            self.request_ids,
            explicit_urls=self.explicit_urls,
            deadline=self.deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            fire_at=self.fire_at,
            progress=progress,
            log=self.log,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = FalHook(self.fal_conn_id)
        self._poller = self.poller(hook)
        try:
            event = await self._poller.run()
        finally:
            await asyncio.shield(hook.aclose())
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """The task was cleared or marked: cancel what is still queued at fal, newest first, within Airflow's
        on_kill window (``batch.cancels.cancel_queued``). Requests already running are left to finish: fal bills
        a request once it started, cancelled or not, and they stay in the task state store, so a clear of the
        task reattaches to them and fetches their results (paid once, listed in its manifest)."""
        poller = getattr(self, "_poller", None)
        waiting = list(poller.waiting) if poller is not None else list(self.request_ids)
        # Said first: on Airflow 3.3 under Python 3.11 the trigger's log may close before the cancels end.
        self.log.info(
            "Task was cleared or marked; cancelling the requests of this batch still queued at fal, newest first "
            "(%d waiting there); requests already running are left to finish, and a clear of the task fetches them",
            len(waiting),
        )
        references = [reference_for(rid, self.endpoint_id, self.url_templates, self.explicit_urls) for rid in waiting]
        await outlasting_repeated_cancels(self._cancel_queued(references))

    async def _cancel_queued(self, references: list[RequestReference]) -> None:
        hook = FalHook(self.fal_conn_id)
        try:
            report = await cancel_queued(hook, references, budget_seconds=TRIGGER_ON_KILL_SECONDS)
            self.log.info("Task was cleared or marked; %s", report.describe())
        finally:
            await hook.aclose()
