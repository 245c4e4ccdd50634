"""Small helpers every queue call of the hook uses, sync and async: a request's body, one call through fal-client's
own retrying request, its timeout, the outcome of a cancel, a status as the provider's ``QueueStatus``, and raising a
mapped error without making it its own cause."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.settings import FalSettings
    from airflow_provider_sam3.models.status import QueueStatus

__all__ = [
    "CANCEL_OUTCOMES",
    "afal_request",
    "afal_request_once",
    "cancel_outcome",
    "cancel_status",
    "fal_request",
    "queue_status",
    "queue_timeout",
    "raise_mapped",
    "request_body",
]

CANCEL_OUTCOMES = {400: "ALREADY_COMPLETED", 404: "NOT_FOUND"}


def raise_mapped(mapped: BaseException, error: BaseException) -> NoReturn:
    """``raise mapped from error``, except when ``mapped`` is ``error`` itself (already a provider error): an
    exception must never be its own cause (that drops the real one and sends chain walkers round forever)."""
    if mapped is error:
        raise error
    raise mapped from error


def queue_timeout(settings: FalSettings) -> Any:
    """The connection's ``request_timeout`` for one status/result/cancel call (fal-client's handles use 120 s)."""
    import httpx

    return httpx.Timeout(settings.request_timeout, connect=min(settings.request_timeout, 30.0))


def fal_request(client: Any, method: str, url: str, timeout: Any, **kwargs: Any) -> Any:
    """One queue call through fal-client's own retrying request (the one its request handles use). Redirects are
    not followed (fal's sync client would): a queue call goes to the URL that was checked, and nowhere else."""
    from airflow_provider_sam3.hooks.fal_client_internals import retrying_request

    return retrying_request(client, method, url, timeout=timeout, follow_redirects=False, **kwargs)


async def afal_request(client: Any, method: str, url: str, timeout: Any, **kwargs: Any) -> Any:
    from airflow_provider_sam3.hooks.fal_client_internals import aretrying_request

    return await aretrying_request(client, method, url, timeout=timeout, follow_redirects=False, **kwargs)


async def afal_request_once(client: Any, method: str, url: str, timeout: Any, **kwargs: Any) -> Any:
    """One HTTP call, no retry (fal-client's errors for a bad status)."""
    from airflow_provider_sam3.hooks.fal_client_internals import arequest

    return await arequest(client, method, url, timeout=timeout, follow_redirects=False, **kwargs)


def request_body(arguments: Mapping[str, Any] | Any) -> dict[str, Any]:
    """A submit's JSON body: an input model's request form, or a plain mapping."""
    return arguments.to_request() if hasattr(arguments, "to_request") else dict(arguments)


def cancel_outcome(error: Exception) -> str | None:
    """fal answers a cancel of a finished or unknown request with 400/404; those are outcomes, not failures."""
    from fal_client import FalClientHTTPError

    if isinstance(error, FalClientHTTPError) and error.status_code in CANCEL_OUTCOMES:
        try:
            return str(error.response.json().get("status") or CANCEL_OUTCOMES[error.status_code])
        except ValueError:
            return CANCEL_OUTCOMES[error.status_code]
    return None


def cancel_status(response: Any) -> str:
    try:
        return str(response.json().get("status", "CANCELLATION_REQUESTED"))
    except ValueError:
        return "CANCELLATION_REQUESTED"


def queue_status(raw: Any) -> QueueStatus:
    """fal-client's ``Queued``/``InProgress``/``Completed`` as the provider's ``QueueStatus``."""
    from fal_client import Completed, InProgress, Queued

    from airflow_provider_sam3.models.status import QueueStatus

    if isinstance(raw, Queued):
        return QueueStatus(state="IN_QUEUE", queue_position=raw.position)
    if isinstance(raw, InProgress):
        return QueueStatus(state="IN_PROGRESS", logs=raw.logs)
    if isinstance(raw, Completed):
        return QueueStatus(
            state="COMPLETED", logs=raw.logs, metrics=raw.metrics or None, error=raw.error, error_type=raw.error_type
        )
    raise TypeError(f"unexpected status object from fal-client: {raw!r}")
