"""The hook's asynchronous twins of submit, status, result, cancel and upload, for the triggerer.

A mixin of ``FalHook`` (split from ``hooks/fal.py``): the same trust checks, retries and error mapping as the
synchronous calls, through the methods ``FalHook`` defines (``aget_conn``, ``aget_settings``, ``_aretrying``...).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.calls import (
    afal_request,
    afal_request_once,
    cancel_status,
    queue_timeout,
    raise_mapped,
)
from airflow_provider_sam3.hooks.deadlines import (
    DOWNLOAD_CALLS,
    PHASE_TIMEOUTS_FIRST,
    FalCallDeadlineError,
    abounded,
    call_seconds,
)
from airflow_provider_sam3.hooks.submit import (
    ASYNC_SUBMIT_MAX_DELAY,
    attempt_timeout,
    lease_ended,
    submit_call,
    submit_options,
    submit_retry_delay,
    submitted_reference,
)

if TYPE_CHECKING:
    import fal_client
    from airflow.sdk.types import Logger

    from airflow_provider_sam3.exceptions import Sam3ProviderError
    from airflow_provider_sam3.guards.text import Scrubber
    from airflow_provider_sam3.hooks.settings import FalSettings
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["AsyncQueueCalls"]


class AsyncQueueCalls:
    """``asubmit``, ``astatus``, ``aresult``, ``acancel``, ``aupload`` (``FalHook`` provides what they call)."""

    if TYPE_CHECKING:
        # Provided by FalHook (and its BaseHook); declared here for the type checker only.
        @property
        def log(self) -> Logger: ...
        async def aget_conn(self) -> fal_client.AsyncClient: ...
        async def aget_settings(self) -> FalSettings: ...
        @staticmethod
        def _body(arguments: Mapping[str, Any] | Any) -> dict[str, Any]: ...
        @staticmethod
        def _check_upload(settings: FalSettings) -> None: ...
        async def _atrusted(self, ref: RequestReference, name: str) -> None: ...
        def _status(self, raw: Any) -> QueueStatus: ...
        def _json(self, response: Any, ref: RequestReference | None = None) -> Any: ...
        def _translate(
            self, error: BaseException, *, endpoint_id: str | None, request_id: str | None, action: str
        ) -> Sam3ProviderError: ...
        @property
        def scrubber(self) -> Scrubber: ...
        async def _aretrying(
            self, action: str, ref: RequestReference, call: Callable[[], Any], deadline: float | None = None
        ) -> Any: ...
        @staticmethod
        def _cancel_outcome(error: Exception) -> str | None: ...

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
        try:
            chosen = submit_options(options, webhook_url, priority, start_timeout, hint)
            url, headers = submit_call(settings.queue_host, endpoint_id, chosen)
            body = self._body(arguments)
        except Exception as error:  # noqa: BLE001 - a bad priority or start_timeout, refused by fal-client
            raise_mapped(self._translate(error, endpoint_id=endpoint_id, request_id=None, action="submit"), error)
        http = await internals.async_http(client)
        attempt = 1
        while True:
            timeout = attempt_timeout(endpoint_id, client.default_timeout, deadline)  # raises: nothing was sent
            post = internals.arequest(
                http, "POST", url, json=body, timeout=timeout, headers=headers, follow_redirects=False
            )
            try:  # bounded in all (``hooks.deadlines``): a host trickling its answer cannot hold the submit
                response = await abounded(post, timeout + PHASE_TIMEOUTS_FIRST, what="submit", endpoint_id=endpoint_id)
            except Exception as error:  # noqa: BLE001 - classified, then retried or translated
                if isinstance(error, FalCallDeadlineError):  # the body may have reached fal: never sent again
                    raise lease_ended(endpoint_id, error) from error
                delay = submit_retry_delay(
                    self.log, endpoint_id, error, attempt, max_delay=ASYNC_SUBMIT_MAX_DELAY, scrubber=self.scrubber
                )
                await asyncio.sleep(delay)
                attempt += 1
                continue
            return submitted_reference(endpoint_id, response, settings.queue_host, self.scrubber)

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
                outcome = self._cancel_outcome(error)
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
        self._check_upload(settings)
        try:
            upload = (await self.aget_conn()).upload(data, content_type, file_name)
            return await abounded(upload, settings.request_timeout * DOWNLOAD_CALLS, what="upload")
        except Exception as error:  # noqa: BLE001
            raise_mapped(self._translate(error, endpoint_id=None, request_id=None, action="upload"), error)
