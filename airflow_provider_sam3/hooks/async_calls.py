"""The hook's asynchronous queue calls, for the triggerer: asubmit, astatus, aresult, acancel and aupload, the twins
of ``hooks.sync_calls``' with the same trust checks, error mapping and retry decisions (``hooks.retries``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.connection import FalConnection
from airflow_provider_sam3.hooks.deadlines import DOWNLOAD_CALLS, abounded, call_seconds
from airflow_provider_sam3.hooks.queue_requests import (
    afal_request,
    afal_request_once,
    cancel_outcome,
    cancel_status,
    queue_timeout,
    raise_mapped,
)
from airflow_provider_sam3.hooks.submit import ASYNC_SUBMIT_MAX_DELAY
from airflow_provider_sam3.hooks.trust import check_upload

if TYPE_CHECKING:
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["AsyncQueueCalls"]


class AsyncQueueCalls(FalConnection):
    """``asubmit``, ``astatus``, ``aresult``, ``acancel`` and ``aupload`` (awaited, never blocking the loop)."""

    async def asubmit(
        self,
        endpoint_id: str,
        arguments: Mapping[str, Any] | Any,
        *,
        webhook_url: str | None = None,
        priority: str | None = None,
        start_timeout: float | None = None,
        hint: str | None = None,
        options: SubmitOptions | None = None,
        deadline: float | None = None,
    ) -> RequestReference:
        """Async ``submit``: the same single-attempt POST, resent only when fal certainly created nothing; the
        queue options as in ``submit`` (``options``, or the separate keywords). ``deadline`` bounds the whole call:
        no attempt starts after it, and an attempt still waiting for fal's answer then ends as an unknown outcome."""
        client = await self.aget_conn()
        settings = await self.aget_settings()
        attempts = self._submit_attempts(
            settings,
            endpoint_id,
            arguments,
            (options, webhook_url, priority, start_timeout, hint),
            per_call=client.default_timeout,
            deadline=deadline,
            max_delay=ASYNC_SUBMIT_MAX_DELAY,
        )
        http = await internals.async_http(client)
        while True:
            timeout = attempts.timeout()  # raises when the deadline has passed: nothing was sent
            post = internals.arequest(http, "POST", attempts.url, **attempts.post(timeout))
            try:  # bounded in all (``hooks.deadlines``): a host trickling its answer cannot hold the submit
                response = await abounded(post, attempts.bound(timeout), what="submit", endpoint_id=endpoint_id)
            except Exception as error:  # noqa: BLE001 - classified, then resent or raised
                await asyncio.sleep(attempts.pause_after(error))
                continue
            return attempts.reference(response)

    async def _ahttp(self) -> Any:
        return await internals.async_http(await self.aget_conn())

    async def astatus(
        self,
        ref: RequestReference,
        *,
        with_logs: bool = False,
        single_attempt: bool = False,
        deadline: float | None = None,
    ) -> QueueStatus:
        """Async ``status``. ``single_attempt``: one HTTP call, no retry of 429s or transient faults (a batch's
        status rounds handle those themselves: a throttled round ends and backs off as a whole, instead of every
        one of its calls retrying on its own). ``deadline`` (epoch): no call runs past it."""
        await self._atrusted(ref, "status_url")
        client = await self._ahttp()
        timeout = queue_timeout(await self.aget_settings())
        request = afal_request_once if single_attempt else afal_request

        async def call() -> Any:
            response = await request(client, "GET", ref.status_url, timeout, params={"logs": with_logs})
            return internals.parse_status(response.json())

        if single_attempt:
            try:
                seconds = call_seconds(timeout.read, deadline)  # a bound on the whole call (``hooks.deadlines``)
                return self._status(
                    await abounded(
                        call(), seconds, what="status", endpoint_id=ref.endpoint_id, request_id=ref.request_id
                    )
                )
            except Exception as error:  # noqa: BLE001 - translated for the caller
                raise_mapped(
                    self._translate(error, endpoint_id=ref.endpoint_id, request_id=ref.request_id, action="status"),
                    error,
                )
        return self._status(await self._aretrying("status", ref, call, deadline))

    async def aresult(self, ref: RequestReference) -> dict[str, Any]:
        """Async ``result``."""
        await self._atrusted(ref, "response_url")
        client = await self._ahttp()
        timeout = queue_timeout(await self.aget_settings())

        response = await self._aretrying("result", ref, lambda: afal_request(client, "GET", ref.response_url, timeout))
        return self._json(response, ref)

    async def acancel(self, ref: RequestReference) -> str:
        """Async ``cancel``."""
        await self._atrusted(ref, "cancel_url")
        client = await self._ahttp()
        timeout = queue_timeout(await self.aget_settings())

        async def call() -> str:
            try:
                response = await afal_request(client, "PUT", ref.cancel_url, timeout)
            except Exception as error:
                outcome = cancel_outcome(error)
                if outcome is None:
                    raise
                return outcome
            return self.scrubber.text(cancel_status(response))

        outcome = await self._aretrying("cancel", ref, call)
        self.log.info("Cancel of %s request %s: %s", ref.endpoint_id, ref.request_id, outcome)
        return outcome

    async def aupload(self, data: bytes, content_type: str, file_name: str | None = None) -> str:
        """Async ``upload``."""
        settings = await self.aget_settings()
        check_upload(settings.queue_host)
        try:
            upload = (await self.aget_conn()).upload(data, content_type, file_name)
            return await abounded(upload, settings.request_timeout * DOWNLOAD_CALLS, what="upload")
        except Exception as error:  # noqa: BLE001
            raise_mapped(self._translate(error, endpoint_id=None, request_id=None, action="upload"), error)
