"""FalHook: fal's submit -> status -> result -> cancel cycle, sync (workers) and async (triggerer).

Built on fal-client's ``SyncClient``/``AsyncClient`` and request handles. What this layer adds: credentials from an
Airflow connection, plain-JSON request references, errors that say what to do, retries of the transient faults
fal-client does not retry itself, a submit that is never resent once fal may have created its request (fal-client
resends it on any transport error), and polling that backs off instead of fal-client's 0.1 s loop.

The hook is assembled from ``hooks.sync_calls``, ``hooks.async_calls`` and ``hooks.downloads``, all built on
``hooks.connection`` (settings, clients, trust checks, error mapping and the retry loops).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_provider_sam3.hooks.async_calls import AsyncQueueCalls
from airflow_provider_sam3.hooks.downloads import OutputDownloads
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_sam3.hooks.sync_calls import SyncQueueCalls

if TYPE_CHECKING:
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.status import QueueStatus

__all__ = ["FalHook"]


class FalHook(SyncQueueCalls, AsyncQueueCalls, OutputDownloads):
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

    def detached_copy(self) -> FalHook:
        """A new hook for the same connection that starts with this one's resolved settings and no clients: for
        another thread or event loop, and safe in a signal handler such as ``on_kill`` (it never looks the
        connection up, which would talk to the task supervisor the interrupted code may be talking to)."""
        copy = FalHook(self.fal_conn_id, retry_attempts=self.retry_attempts)
        copy._settings = self.get_settings() if self._settings is None else self._settings
        copy._scrubber = self.scrubber
        return copy

    def wait(
        self,
        ref: RequestReference,
        *,
        deadline: float | None = None,
        on_status: Callable[[QueueStatus], None] | None = None,
        with_logs: bool = True,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
    ) -> QueueStatus:
        """Poll until COMPLETED, backing off between checks; ``deadline`` is an absolute epoch time. The poll
        intervals default to the connection's.

        Used by operators that do not defer. Raises ``FalDeadlineExceededError`` when the deadline passes (the
        caller decides whether to cancel).
        """
        from airflow_provider_sam3.hooks.status_polling import wait_for

        return wait_for(
            self,
            ref,
            deadline=deadline,
            on_status=on_status,
            with_logs=with_logs,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
        )

    # ---------------------------------------------------------------- connection test (UI "Test" button)

    def test_connection(self) -> tuple[bool, str]:
        """One cheap authenticated call (status of a request id that cannot exist), answered in plain words."""
        from airflow_provider_sam3.hooks.connection_test import connection_test

        return connection_test(self.get_settings, self.fal_conn_id)
