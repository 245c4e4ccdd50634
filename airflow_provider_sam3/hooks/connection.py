"""FalConnection: what every call of the hook needs, sync or async: one fal connection's settings, key scrubber and
clients, the trust check of a reference, fal's answers read and cleaned, errors translated, and the retry loops."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sam3.exceptions import FalOutputRefusedError, Sam3ProviderError
from airflow_provider_sam3.guards.text import Scrubber
from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.backoff import RETRY_ATTEMPTS
from airflow_provider_sam3.hooks.deadlines import abounded, bounded
from airflow_provider_sam3.hooks.errors import translate, translate_scrubbed
from airflow_provider_sam3.hooks.queue_requests import queue_status, raise_mapped, request_body
from airflow_provider_sam3.hooks.retries import CallRetries, SubmitAttempts
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID, FalSettings, resolve_settings
from airflow_provider_sam3.hooks.submit import submit_call, submit_options
from airflow_provider_sam3.hooks.trust import check_reference
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.status import QueueStatus

if TYPE_CHECKING:
    import fal_client

    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["FalConnection"]


class FalConnection(BaseHook):
    """The base of ``FalHook`` (``hooks.fal``), its sync and async calls (``hooks.sync_calls``, ``hooks.async_calls``)
    and its downloads (``hooks.downloads``): one ``fal`` connection, resolved once, and the clients built on it."""

    def __init__(self, fal_conn_id: str = DEFAULT_CONN_ID, *, retry_attempts: int = RETRY_ATTEMPTS) -> None:
        super().__init__()
        self.fal_conn_id = fal_conn_id
        self.retry_attempts = max(1, retry_attempts)
        self._settings: FalSettings | None = None
        self._scrubber: Scrubber | None = None
        self._sync_client: fal_client.SyncClient | None = None
        self._async_client: fal_client.AsyncClient | None = None
        self._download_client: Any = None

    # ---------------------------------------------------------------- settings and clients

    def get_settings(self) -> FalSettings:
        """Key, queue host and timeouts from the connection, else from fal's environment variables."""
        if self._settings is None:
            from airflow.sdk.exceptions import AirflowNotFoundException

            try:
                conn = self.get_connection(self.fal_conn_id)
                self._settings = resolve_settings(self.fal_conn_id, conn, conn.extra_dejson)
            except AirflowNotFoundException:
                self._settings = resolve_settings(self.fal_conn_id, None, None)
            self._mask(self._settings)
        return self._settings

    async def aget_settings(self) -> FalSettings:
        """Like ``get_settings`` but without blocking the triggerer's event loop."""
        if self._settings is None:
            from airflow.sdk.exceptions import AirflowNotFoundException

            try:
                conn = await self.aget_connection(self.fal_conn_id)
                self._settings = resolve_settings(self.fal_conn_id, conn, await conn.aextra_dejson())
            except AirflowNotFoundException:
                self._settings = resolve_settings(self.fal_conn_id, None, None)
            self._mask(self._settings)
        return self._settings

    def _mask(self, settings: FalSettings) -> None:
        self._scrubber = Scrubber(settings.key)
        if settings.key:
            from airflow.sdk.log import mask_secret

            mask_secret(settings.key)

    @property
    def scrubber(self) -> Scrubber:
        """Cleans text from fal's answers of this connection's key, in every form (``guards.text``)."""
        if self._scrubber is None:
            self.get_settings()
        assert self._scrubber is not None
        return self._scrubber

    def get_conn(self) -> fal_client.SyncClient:
        """fal-client's synchronous client, authenticated with this connection's key."""
        if self._sync_client is None:
            import fal_client

            settings = self.get_settings()
            key = settings.require_key(self.fal_conn_id)
            self._sync_client = fal_client.SyncClient(key=key, default_timeout=settings.request_timeout)
        return self._sync_client

    async def aget_conn(self) -> fal_client.AsyncClient:
        """fal-client's asynchronous client, for triggers."""
        if self._async_client is None:
            if not _ASYNC_READY.is_set():
                await asyncio.to_thread(_load_async_dependencies)
            import fal_client

            settings = await self.aget_settings()
            key = settings.require_key(self.fal_conn_id)
            self._async_client = fal_client.AsyncClient(key=key, default_timeout=settings.request_timeout)
        return self._async_client

    async def aclose(self) -> None:
        """Close the async client's connections (a trigger calls this when it ends)."""
        if self._async_client is not None:
            http = internals.built_async_http(self._async_client)
            if http is not None and not asyncio.iscoroutine(http):
                if inspect.isawaitable(http):  # asyncstdlib's cached_property caches an awaitable wrapper
                    http = await http
                await http.aclose()
            self._async_client = None
        if self._download_client is not None:
            await self._download_client.aclose()
            self._download_client = None

    def _drop_sync_client(self) -> None:
        """Close the blocking client a call overran its deadline on (its read then fails) and build a new one for
        the next call."""
        client, self._sync_client = self._sync_client, None
        if client is not None:
            try:
                internals.sync_http(client).close()
            except Exception:  # noqa: BLE001 - closing a client in use may complain; it is dropped either way
                pass

    # ---------------------------------------------------------------- what every call shares

    def _trusted(self, ref: RequestReference, name: str) -> None:
        """Refuse, before the key is sent, a reference whose request id or URL is not this connection's queue's."""
        check_reference(ref, self.get_settings().queue_host, names=(name,))

    async def _atrusted(self, ref: RequestReference, name: str) -> None:
        check_reference(ref, (await self.aget_settings()).queue_host, names=(name,))

    def _status(self, raw: Any) -> QueueStatus:
        """fal-client's status object as a ``QueueStatus``, its texts (error, logs) cleaned of the key."""
        status = queue_status(raw)
        clean = self.scrubber.text
        return status.model_copy(
            update={
                "error": clean(status.error) if status.error is not None else None,
                "error_type": clean(status.error_type) if status.error_type is not None else None,
                "logs": self.scrubber.tree(status.logs) if status.logs else status.logs,
            }
        )

    def _json(self, response: Any, ref: RequestReference | None = None) -> Any:
        """A response's JSON body, every string in it cleaned of the key once parsed (so text written in JSON's
        escapes is cleaned too). A body that is not JSON, or nests past what a parser can walk, is refused as an
        unusable answer naming the request."""
        import json

        try:
            return self.scrubber.tree(json.loads(response.text))
        except (ValueError, RecursionError) as error:
            raise FalOutputRefusedError(
                f"fal's answer could not be read as a JSON document ({type(error).__name__}); the request's result "
                "stays on fal for its retention period: fetch it again with the request id",
                endpoint_id=ref.endpoint_id if ref else None,
                request_id=ref.request_id if ref else None,
            ) from None

    def _translate(
        self, error: BaseException, *, endpoint_id: str | None, request_id: str | None, action: str
    ) -> Sam3ProviderError:
        """``errors.translate`` with this connection's scrubber (``errors.translate_scrubbed``)."""
        return translate_scrubbed(error, self.scrubber, endpoint_id=endpoint_id, request_id=request_id, action=action)

    # ---------------------------------------------------------------- the retry loops (decisions in ``hooks.retries``)

    def _submit_attempts(
        self,
        settings: FalSettings,
        endpoint_id: str,
        arguments: Mapping[str, Any] | Any,
        chosen: tuple[SubmitOptions | None, str | None, str | None, float | None, str | None],
        *,
        per_call: float,
        deadline: float | None,
        max_delay: float,
    ) -> SubmitAttempts:
        """One submit's attempts, its POST built from ``chosen`` (``submit``'s ``options``, ``webhook_url``,
        ``priority``, ``start_timeout`` and ``hint``); a bad option is raised mapped, before anything is sent."""
        try:
            url, headers = submit_call(settings.queue_host, endpoint_id, submit_options(*chosen))
            body = request_body(arguments)
        except Exception as error:  # noqa: BLE001 - a bad priority or start_timeout, refused by fal-client
            raise_mapped(self._translate(error, endpoint_id=endpoint_id, request_id=None, action="submit"), error)
        return SubmitAttempts(
            endpoint_id, url, headers, body, settings.queue_host, per_call, deadline, max_delay, self.scrubber, self.log
        )

    def _retrying(
        self, action: str, ref: RequestReference, call: Callable[[], Any], deadline: float | None = None
    ) -> Any:
        """``call()`` with the hook's retries, each attempt a blocking HTTP call bounded in all (``hooks.deadlines``),
        none started past ``deadline``."""
        retries = self._call_retries(action, ref, self.get_settings(), deadline)
        while True:
            try:
                return bounded(
                    call,
                    retries.seconds(),
                    on_expiry=self._drop_sync_client,
                    what=action,
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                )
            except Exception as error:  # noqa: BLE001 - every failure is translated, then re-raised or retried
                time.sleep(retries.pause_after(error))

    async def _aretrying(
        self, action: str, ref: RequestReference, call: Callable[[], Any], deadline: float | None = None
    ) -> Any:
        """``await call()`` with the hook's retries: the async twin of ``_retrying``."""
        retries = self._call_retries(action, ref, await self.aget_settings(), deadline)
        while True:
            try:
                return await abounded(
                    call(), retries.seconds(), what=action, endpoint_id=ref.endpoint_id, request_id=ref.request_id
                )
            except Exception as error:  # noqa: BLE001 - every failure is translated, then re-raised or retried
                await asyncio.sleep(retries.pause_after(error))

    def _call_retries(
        self, action: str, ref: RequestReference, settings: FalSettings, deadline: float | None
    ) -> CallRetries:
        return CallRetries(
            action, ref, self.retry_attempts, settings.request_timeout, deadline, self.scrubber, self.log
        )


_ASYNC_READY = threading.Event()


def _load_async_dependencies() -> None:
    """Import fal-client and httpx and build the pydantic validators the async path uses, in a thread: done on
    the triggerer's event loop, this first-time work blocks every other trigger for a few hundred ms."""
    import fal_client.client  # noqa: F401
    import httpx  # noqa: F401

    QueueStatus(state="IN_QUEUE")
    RequestReference(endpoint_id="-", request_id="-", status_url="-", response_url="-", cancel_url="-")
    translate(RuntimeError("warm-up"), endpoint_id=None, request_id=None, action="warm-up")
    _ASYNC_READY.set()
