"""fal's queue options, declared once for every operator that submits (the single-request ones and the batch) and
checked once into the ``SubmitOptions`` the hook's submit sends."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_sam3.operators.preflight import check_pacing, check_submit_options

if TYPE_CHECKING:
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = ["QueueOptionsOperator"]


class QueueOptionsOperator(BaseOperator):
    """Base of ``FalQueueOperator`` (and the typed operators) and ``Sam3BatchOperator``: the queue options and the
    status polling both take, in one signature (so ``partial()``, ``expand()`` and ``default_args`` know them).

    :param poll_interval, max_poll_interval: status polling starts at the first and backs off to the second
        (default: the connection's settings for a single request; 1 s backing off to 5 s for a batch).
    :param priority, start_timeout, webhook_url, hint: passed to fal's queue on submit. ``priority="low"`` needs
        ``start_timeout``: fal serves low-priority requests after every normal request of every fal user.
    :param media_expires_in: how long fal keeps the output media (``X-Fal-Object-Lifecycle-Preference``): seconds,
        a ``timedelta``, or ``"immediate"``, ``"1h"``, ``"1d"``, ``"7d"``, ``"30d"``, ``"1y"``; ``None``: fal's
        default. Copy outputs with ``output_path`` before it passes.
    :param store_io: ``False`` asks fal not to keep the inputs and outputs in its request history
        (``X-Fal-Store-IO: 0``).
    :param result_cache: a folder (local or any ObjectStoragePath) shared by runs, backfills and shards: a request
        whose exact computation is there already (same endpoint, fields, image bytes) is not sent; a paid one is
        kept there. Off unless set here or in the connection's extra ``result_cache`` (templated).
        ``cache_mode``: ``read_write`` (default), ``read``, ``write`` or ``refresh``; ``cache_max_age``: seconds
        after which an entry misses; ``cache_salt``: any text that starts a new generation of keys (templated);
        ``cache_urls``: key http(s) inputs by their URL (their bytes may change; off by default, so such requests
        are not cached).

    ``checked_queue_options()`` checks them all (``operators.preflight``) before anything is sent, and
    ``check_cache_options()`` the cache's.
    """

    def __init__(
        self,
        *,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        priority: str | None = None,
        start_timeout: float | None = None,
        webhook_url: str | None = None,
        hint: str | None = None,
        media_expires_in: int | str | timedelta | None = None,
        store_io: bool = True,
        result_cache: Any = None,
        cache_mode: str = "read_write",
        cache_max_age: float | None = None,
        cache_salt: str | None = None,
        cache_urls: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result_cache = result_cache
        self.cache_mode = cache_mode
        self.cache_max_age = cache_max_age
        self.cache_salt = cache_salt
        self.cache_urls = cache_urls
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.priority = priority
        self.start_timeout = start_timeout
        self.webhook_url = webhook_url
        self.hint = hint
        self.media_expires_in = media_expires_in
        self.store_io = store_io

    def checked_queue_options(self) -> SubmitOptions:
        """Every queue option and polling interval checked (``InputValidationError`` naming the parameter); the
        ``SubmitOptions`` each submit sends."""
        options = check_submit_options(
            priority=self.priority,
            start_timeout=self.start_timeout,
            hint=self.hint,
            webhook_url=self.webhook_url,
            media_expires_in=self.media_expires_in,
            store_io=self.store_io,
        )
        check_pacing(self.poll_interval, self.max_poll_interval)
        return options

    def check_cache_options(self) -> None:
        """The result cache's options checked (``InputValidationError`` naming the parameter)."""
        from airflow_provider_sam3.storage.result_cache import check_cache_settings

        check_cache_settings(
            root=self.result_cache or None,
            mode=self.cache_mode,
            max_age=self.cache_max_age,
            salt=self.cache_salt,
            key_urls=self.cache_urls,
        )
