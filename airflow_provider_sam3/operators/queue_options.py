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

    ``checked_queue_options()`` checks them all (``operators.preflight``) before anything is sent.
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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
