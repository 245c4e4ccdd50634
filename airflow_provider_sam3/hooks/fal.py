"""FalHook: fal's submit -> status -> result -> cancel cycle, sync (workers) and async (triggerer).

Built on fal-client's ``SyncClient``/``AsyncClient`` and request handles. What this layer adds: credentials from an
Airflow connection, plain-JSON request references, errors that say what to do, retries of the transient faults
fal-client does not retry itself, a submit that is never resent once fal may have created its request (fal-client
resends it on any transport error), and polling that backs off instead of fal-client's 0.1 s loop.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_sam3.exceptions import FalOutputRefusedError, FalStartTimeoutError, Sam3ProviderError
from airflow_provider_sam3.guards.text import Scrubber
from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.async_calls import AsyncQueueCalls
from airflow_provider_sam3.hooks.backoff import RETRY_ATTEMPTS, RETRY_BACKOFF
from airflow_provider_sam3.hooks.calls import (
    cancel_status,
    fal_request,
    queue_status,
    queue_timeout,
    raise_mapped,
)
from airflow_provider_sam3.hooks.deadlines import (
    DOWNLOAD_CALLS,
    PHASE_TIMEOUTS_FIRST,
    FalCallDeadlineError,
    abounded,
    bounded,
    call_seconds,
)
from airflow_provider_sam3.hooks.downloads import OutputDownloads
from airflow_provider_sam3.hooks.errors import translate
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID, FalSettings, resolve_settings
from airflow_provider_sam3.hooks.submit import (
    attempt_timeout,
    fal_max_delay,
    lease_ended,
    submit_call,
    submit_options,
    submit_retry_delay,
    submitted_reference,
)
from airflow_provider_sam3.hooks.trust import check_reference
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.status import QueueStatus

if TYPE_CHECKING:
    import fal_client

    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["CANCEL_OUTCOMES", "FalHook"]

CANCEL_OUTCOMES = {400: "ALREADY_COMPLETED", 404: "NOT_FOUND"}


class FalHook(AsyncQueueCalls, OutputDownloads, BaseHook):
    """Talks to fal's queue for one ``fal`` connection.

    :param fal_conn_id: the Airflow connection holding the API key (password) and optional queue host. Without
        such a connection the hook uses ``FAL_KEY`` (then ``FAL_KEY_ID``/``FAL_KEY_SECRET``), as fal-client does.
    :param retry_attempts: attempts for status, result and cancel calls that fail transiently. Submit is never
        retried in a way that can pay twice: it is resent (up to fal-client's ``MAX_ATTEMPTS``, with its backoff)
        only when fal certainly created nothing (no connection made; 408, 429, or an nginx 502/503 from fal's
        edge). A submit whose answer is lost after the body may have reached fal raises
        ``FalSubmitOutcomeUnknownError`` and is not resent.
    """

    conn_name_attr = "fal_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "fal"
    hook_name = "fal.ai"

    def __init__(self, fal_conn_id: str = default_conn_name, *, retry_attempts: int = RETRY_ATTEMPTS) -> None:
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

    def detached_copy(self) -> FalHook:
        """A new hook for the same connection that starts with this one's resolved settings and no clients: for
        another thread or event loop, and safe in a signal handler such as ``on_kill`` (it never looks the
        connection up, which would talk to the task supervisor the interrupted code may be talking to)."""
        copy = FalHook(self.fal_conn_id, retry_attempts=self.retry_attempts)
        copy._settings = self.get_settings() if self._settings is None else self._settings
        copy._scrubber = self.scrubber
        return copy

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _body(arguments: Mapping[str, Any] | Any) -> dict[str, Any]:
        return arguments.to_request() if hasattr(arguments, "to_request") else dict(arguments)

    @staticmethod
    def _check_upload(settings: FalSettings) -> None:
        """An upload sends the key to fal's storage hosts: only with fal's own queue (or the emulator's)."""
        from airflow_provider_sam3.hooks.trust import untrusted, upload_problem

        problem = upload_problem(settings.queue_host)
        if problem:
            raise untrusted(
                f"upload refused: {problem}; the fal key was not sent. Give images up to 4 MiB (sent inline as data "
                "URIs), or host larger files yourself and pass their https URL",
                endpoint_id=None,
                request_id=None,
            )

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
        """``errors.translate`` with this connection's scrubber: no text from fal carries the key into an error, nor
        stays in the original one it is raised from."""
        self.scrubber.exception(error)
        return translate(error, endpoint_id=endpoint_id, request_id=request_id, action=action, clean=self.scrubber.text)

    def _retry_delay(self, action: str, ref: RequestReference, error: Exception, attempt: int) -> float:
        """The pause before trying ``action`` again after ``error``; raises the mapped error when it is not retried."""
        mapped = self._translate(error, endpoint_id=ref.endpoint_id, request_id=ref.request_id, action=action)
        if not _worth_retrying(mapped, error) or attempt + 1 >= self.retry_attempts:
            raise_mapped(mapped, error)
        delay = RETRY_BACKOFF.delay(attempt)
        self.log.warning(
            "%s; retrying %s in %.1f s (attempt %d of %d)", mapped, action, delay, attempt + 2, self.retry_attempts
        )
        return delay

    def _retrying(
        self, action: str, ref: RequestReference, call: Callable[[], Any], deadline: float | None = None
    ) -> Any:
        """``call()`` with the hook's retries, each attempt a blocking HTTP call bounded in all (``hooks.deadlines``),
        none started past ``deadline``."""
        per_call = self.get_settings().request_timeout
        for attempt in range(self.retry_attempts):
            try:
                return bounded(
                    call,
                    call_seconds(per_call, deadline),
                    on_expiry=self._drop_sync_client,
                    what=action,
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                )
            except Exception as error:  # noqa: BLE001 - every failure is translated, then re-raised or retried
                delay = self._retry_delay(action, ref, error, attempt)
                if deadline is not None and time.time() + delay >= deadline:
                    raise_mapped(
                        self._translate(error, endpoint_id=ref.endpoint_id, request_id=ref.request_id, action=action),
                        error,
                    )
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _drop_sync_client(self) -> None:
        """Close the blocking client a call overran its deadline on (its read then fails) and build a new one for
        the next call."""
        client, self._sync_client = self._sync_client, None
        if client is not None:
            try:
                internals.sync_http(client).close()
            except Exception:  # noqa: BLE001 - closing a client in use may complain; it is dropped either way
                pass

    async def _aretrying(
        self, action: str, ref: RequestReference, call: Callable[[], Any], deadline: float | None = None
    ) -> Any:
        """``await call()`` with the hook's retries, each attempt bounded in all (``hooks.deadlines``), none started
        past ``deadline``: the async twin of ``_retrying``."""
        per_call = (await self.aget_settings()).request_timeout
        for attempt in range(self.retry_attempts):
            try:
                return await abounded(
                    call(),
                    call_seconds(per_call, deadline),
                    what=action,
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                )
            except Exception as error:  # noqa: BLE001 - every failure is translated, then re-raised or retried
                delay = self._retry_delay(action, ref, error, attempt)
                if deadline is not None and time.time() + delay >= deadline:
                    raise_mapped(
                        self._translate(error, endpoint_id=ref.endpoint_id, request_id=ref.request_id, action=action),
                        error,
                    )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    def _cancel_outcome(error: Exception) -> str | None:
        """fal answers a cancel of a finished or unknown request with 400/404; those are outcomes, not failures."""
        from fal_client import FalClientHTTPError

        if isinstance(error, FalClientHTTPError) and error.status_code in CANCEL_OUTCOMES:
            try:
                return str(error.response.json().get("status") or CANCEL_OUTCOMES[error.status_code])
            except ValueError:
                return CANCEL_OUTCOMES[error.status_code]
        return None

    # ---------------------------------------------------------------- synchronous queue cycle

    def submit(
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
        """Queue one request and return its reference.

        Queue options come either as ``options`` (a ``SubmitOptions`` from ``operators.checks.check_submit_options``,
        which also carries the media lifetime and the request-history opt-out) or, as before, as the separate
        ``webhook_url``, ``priority``, ``start_timeout`` and ``hint`` keywords; not both.

        The POST is fal-client's own (URL, headers, authenticated client, error parsing) but sent here, one attempt
        at a time: it is resent only when fal certainly created nothing (see ``submit_fault``). When the answer is
        lost after the body may have reached fal, this raises ``FalSubmitOutcomeUnknownError`` instead of sending
        it again, so a submit never pays twice. ``deadline`` (epoch seconds, the caller's reservation lease): no
        attempt starts after it, and each attempt's timeout ends by it.
        """
        settings = self.get_settings()
        try:
            chosen = submit_options(options, webhook_url, priority, start_timeout, hint)
            url, headers = submit_call(settings.queue_host, endpoint_id, chosen)
            body = self._body(arguments)
        except Exception as error:  # noqa: BLE001 - a bad priority or start_timeout, refused by fal-client
            raise_mapped(self._translate(error, endpoint_id=endpoint_id, request_id=None, action="submit"), error)
        attempt = 1
        while True:
            seconds = attempt_timeout(endpoint_id, settings.request_timeout, deadline)  # raises: nothing was sent
            http = internals.sync_http(self.get_conn())
            try:
                response = bounded(
                    lambda: internals.request(
                        http, "POST", url, json=body, timeout=seconds, headers=headers, follow_redirects=False
                    ),
                    seconds + PHASE_TIMEOUTS_FIRST,
                    on_expiry=self._drop_sync_client,
                    what="submit",
                    endpoint_id=endpoint_id,
                )
            except FalCallDeadlineError as error:  # the body may have reached fal: never sent again
                raise lease_ended(endpoint_id, error) from error
            except Exception as error:  # noqa: BLE001 - classified, then retried or translated
                delay = submit_retry_delay(
                    self.log, endpoint_id, error, attempt, max_delay=fal_max_delay(), scrubber=self.scrubber
                )
                time.sleep(delay)
                attempt += 1
                continue
            ref = submitted_reference(endpoint_id, response, settings.queue_host, self.scrubber)
            self.log.info("Submitted %s request %s", endpoint_id, ref.request_id)
            return ref

    def status(self, ref: RequestReference, *, with_logs: bool = False, deadline: float | None = None) -> QueueStatus:
        """One status check; no HTTP call of it runs past ``deadline`` (epoch), the caller's own deadline."""
        self._trusted(ref, "status_url")
        timeout = queue_timeout(self.get_settings())

        def call() -> Any:
            client = internals.sync_http(self.get_conn())
            response = fal_request(client, "GET", ref.status_url, timeout, params={"logs": with_logs})
            return internals.parse_status(response.json())

        return self._status(self._retrying("status", ref, call, deadline))

    def result(self, ref: RequestReference) -> dict[str, Any]:
        """The completed request's output JSON; raises the mapped error when the request failed."""
        self._trusted(ref, "response_url")
        timeout = queue_timeout(self.get_settings())

        def call() -> Any:
            return fal_request(internals.sync_http(self.get_conn()), "GET", ref.response_url, timeout)

        return self._json(self._retrying("result", ref, call), ref)

    def cancel(self, ref: RequestReference) -> str:
        """Ask fal to cancel; returns fal's outcome (CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND)."""
        self._trusted(ref, "cancel_url")
        timeout = queue_timeout(self.get_settings())

        def call() -> str:
            try:
                response = fal_request(internals.sync_http(self.get_conn()), "PUT", ref.cancel_url, timeout)
            except Exception as error:
                outcome = self._cancel_outcome(error)
                if outcome is None:
                    raise
                return outcome
            return self.scrubber.text(cancel_status(response))

        outcome = self._retrying("cancel", ref, call)
        self.log.info("Cancel of %s request %s: %s", ref.endpoint_id, ref.request_id, outcome)
        return outcome

    def upload(self, data: bytes, content_type: str, file_name: str | None = None) -> str:
        """Upload bytes to fal's storage and return their URL (for inputs too large for a data URI), within
        ``DOWNLOAD_CALLS`` per-call timeouts in all."""
        settings = self.get_settings()
        self._check_upload(settings)
        try:
            return bounded(
                lambda: self.get_conn().upload(data, content_type, file_name),
                settings.request_timeout * DOWNLOAD_CALLS,
                on_expiry=self._drop_sync_client,
                what="upload",
            )
        except Exception as error:  # noqa: BLE001
            raise_mapped(self._translate(error, endpoint_id=None, request_id=None, action="upload"), error)

    def wait(
        self,
        ref: RequestReference,
        *,
        deadline: float | None = None,
        on_status: Callable[[QueueStatus], None] | None = None,
        with_logs: bool = True,
    ) -> QueueStatus:
        """Poll until COMPLETED, backing off between checks; ``deadline`` is an absolute epoch time.

        Used by operators that do not defer. Raises ``FalDeadlineExceededError`` when the deadline passes (the
        caller decides whether to cancel).
        """
        from airflow_provider_sam3.hooks.waiting import wait_for

        return wait_for(self, ref, deadline=deadline, on_status=on_status, with_logs=with_logs)

    # ---------------------------------------------------------------- connection test (UI "Test" button)

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (status of a request id that cannot exist), answered in plain words."""
        from airflow_provider_sam3.hooks.connection_test import connection_test

        return connection_test(self.get_settings, self.fal_conn_id)


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


def _worth_retrying(mapped: Sam3ProviderError, error: BaseException) -> bool:
    """Whether the hook should make the same call again: it may succeed soon, and fal-client has not already made it
    ``MAX_ATTEMPTS`` times (429, fal's edge 502/503/504, timeouts and transport errors), which retrying again would
    multiply into minutes of calls. A start timeout is retryable by resubmitting, but it is the request's final
    answer: fetching its result again returns the same 504."""
    if internals.fal_retries(error):
        return False
    return mapped.retryable and not isinstance(mapped, FalStartTimeoutError)
