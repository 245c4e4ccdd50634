"""The queue options of one submit (priority, start deadline, runner hint, webhook, media lifetime, request
history), checked once by ``operators.preflight.check_submit_options`` and carried as one frozen value to
``FalHook.submit``/``asubmit``, which turn it into fal's query string and headers. Pure Python."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SubmitOptions"]


@dataclass(frozen=True)
class SubmitOptions:
    """What fal's queue is asked besides the request body; ``SubmitOptions()`` asks nothing special.

    - ``priority``: ``"normal"`` or ``"low"`` (header ``X-Fal-Queue-Priority``); ``None`` is fal's normal.
    - ``start_timeout``: seconds fal may keep the request before it starts (``X-Fal-Request-Timeout``).
    - ``hint``: a runner hint (``X-Fal-Runner-Hint``), to route requests sharing a warm runner.
    - ``webhook_url``: fal POSTs the result there when the request finishes (``?fal_webhook=``).
    - ``media_expires_in``: seconds fal keeps the output media (``X-Fal-Object-Lifecycle-Preference``);
      ``None``: fal's default retention.
    - ``store_io``: ``False`` sends ``X-Fal-Store-IO: 0``: fal does not keep the inputs and outputs in the
      request history of its dashboard.
    """

    priority: str | None = None
    start_timeout: float | None = None
    hint: str | None = None
    webhook_url: str | None = None
    media_expires_in: int | None = None
    store_io: bool = True
