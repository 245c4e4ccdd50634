"""The hook's blocking queue calls, for workers: submit, status, result, cancel and upload, each HTTP call bounded
in all (``hooks.deadlines``); their retry decisions are ``hooks.retries``', shared with the async calls."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.connection import FalConnection
from airflow_provider_sam3.hooks.deadlines import DOWNLOAD_CALLS, bounded
from airflow_provider_sam3.hooks.queue_requests import (
    cancel_outcome,
    cancel_status,
    fal_request,
    queue_timeout,
    raise_mapped,
)
from airflow_provider_sam3.hooks.submit import fal_max_delay
from airflow_provider_sam3.hooks.trust import check_upload

if TYPE_CHECKING:
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["SyncQueueCalls"]


class SyncQueueCalls(FalConnection):
    """``submit``, ``status``, ``result``, ``cancel`` and ``upload`` (blocking)."""

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

        Queue options come either as ``options`` (a ``SubmitOptions`` from ``operators.preflight.check_submit_options``,
        which also carries the media lifetime and the request-history opt-out) or, as before, as the separate
        ``webhook_url``, ``priority``, ``start_timeout`` and ``hint`` keywords; not both.

        The POST is fal-client's own (URL, headers, authenticated client, error parsing) but sent here, one attempt
        at a time: it is resent only when fal certainly created nothing (see ``submit_fault``). When the answer is
        lost after the body may have reached fal, this raises ``FalSubmitOutcomeUnknownError`` instead of sending
        it again, so a submit never pays twice. ``deadline`` (epoch seconds, the caller's reservation lease): no
        attempt starts after it, and each attempt's timeout ends by it.
        """
        settings = self.get_settings()
        attempts = self._submit_attempts(
            settings,
            endpoint_id,
            arguments,
            (options, webhook_url, priority, start_timeout, hint),
            per_call=settings.request_timeout,
            deadline=deadline,
            max_delay=fal_max_delay(),
        )
        while True:
            seconds = attempts.timeout()  # raises when the deadline has passed: nothing was sent
            http = internals.sync_http(self.get_conn())
            try:
                response = bounded(
                    lambda: internals.request(http, "POST", attempts.url, **attempts.post(seconds)),
                    attempts.bound(seconds),
                    on_expiry=self._drop_sync_client,
                    what="submit",
                    endpoint_id=endpoint_id,
                )
            except Exception as error:  # noqa: BLE001 - classified, then resent or raised
                time.sleep(attempts.pause_after(error))
                continue
            ref = attempts.reference(response)
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
                outcome = cancel_outcome(error)
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
        check_upload(settings.queue_host)
        try:
            return bounded(
                lambda: self.get_conn().upload(data, content_type, file_name),
                settings.request_timeout * DOWNLOAD_CALLS,
                on_expiry=self._drop_sync_client,
                what="upload",
            )
        except Exception as error:  # noqa: BLE001
            raise_mapped(self._translate(error, endpoint_id=None, request_id=None, action="upload"), error)
