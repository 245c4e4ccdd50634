"""Submitting without paying twice: the submit's URL and headers, and what a failed submit POST means.

Pure classification, no state: ``hooks.retries.SubmitAttempts`` uses it for the sync and async submit alike.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import Sam3ProviderError
from airflow_provider_sam3.hooks import fal_client_internals as internals
from airflow_provider_sam3.hooks.errors import certificate_problem

__all__ = [
    "ASYNC_SUBMIT_MAX_DELAY",
    "SUBMIT_NOT_ACCEPTED_CODES",
    "attempt_timeout",
    "describe_error",
    "fal_max_delay",
    "lease_ended",
    "outcome_unknown",
    "submit_call",
    "submit_fault",
    "submit_options",
    "submit_retry_delay",
    "submitted_reference",
]

ASYNC_SUBMIT_MAX_DELAY = 10.0
"""fal-client's async retry loop caps its delay at 10 s (its sync loop at ``MAX_DELAY``, 30 s); submit does the same."""
SUBMIT_NOT_ACCEPTED_CODES = (408, 429)
"""Answers refusing a submit outright. fal-client also retries 409, whose meaning for a submit is undocumented."""

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_sam3.guards.text import Scrubber
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.submit_options import SubmitOptions


def fal_max_delay() -> float:
    return internals.max_delay()


def submit_options(
    options: SubmitOptions | None,
    webhook_url: str | None,
    priority: str | None,
    start_timeout: float | None,
    hint: str | None,
) -> SubmitOptions:
    """One ``SubmitOptions`` from ``submit``'s keywords: ``options`` (checked by ``check_submit_options``) or the
    older separate keywords, not both."""
    from airflow_provider_sam3.models.submit_options import SubmitOptions

    separate = {"webhook_url": webhook_url, "priority": priority, "start_timeout": start_timeout, "hint": hint}
    given = sorted(name for name, value in separate.items() if value is not None)
    if options is None:  # values checked by fal-client's helpers when the headers are built
        return SubmitOptions(webhook_url=webhook_url, priority=priority, start_timeout=start_timeout, hint=hint)
    if given:
        raise TypeError(f"give submit options either as options= or as {', '.join(given)}=, not both")
    return options


def submit_call(queue_host: str, endpoint_id: str, options: SubmitOptions) -> tuple[str, dict[str, str]]:
    """The submit's URL and headers, built as fal-client's ``submit`` builds them (and validated by its helpers), on
    this connection's queue host: fal-client's own ``QUEUE_URL_FORMAT`` is a process-wide global, shared by every
    connection and by user code, so it is neither read nor changed here. fal-client 1.0.x has no submit parameter
    for the media lifetime or the request history: their headers are added as fal documents them."""
    from urllib.parse import urlencode

    url = f"https://{queue_host}/{endpoint_id}"
    if options.webhook_url is not None:
        url += "?" + urlencode({"fal_webhook": options.webhook_url})
    headers = internals.submit_headers(options.hint, options.priority, options.start_timeout)
    if options.media_expires_in is not None:
        headers[internals.LIFECYCLE_HEADER] = internals.lifecycle_header_value(options.media_expires_in)
    if not options.store_io:
        headers[internals.STORE_IO_HEADER] = "0"
    return url, headers


def submit_fault(error: BaseException) -> str:
    """What a failed submit POST means for the request it carried.

    ``not_created``: fal certainly created nothing, so sending it again cannot pay twice: the connection was never
    made (nothing was sent), or fal's edge refused the POST (408, 429, or an nginx 502/503 answered without an
    ``x-fal-request-id``: fal-client's ``_is_ingress_error``, the queue never saw it). ``lost``: the body may have
    reached fal but the answer did not come back (read/write errors after connecting, timeouts while waiting for the
    answer, a dropped or garbled response, or an nginx 504: the edge forwarded the POST and gave up waiting for the
    queue), so fal may have created the request. ``refused``: any other answer or local failure, not resent.
    """
    import httpx
    from fal_client import FalClientHTTPError

    if isinstance(error, FalClientHTTPError):
        response = error.response
        if error.status_code in SUBMIT_NOT_ACCEPTED_CODES:
            return "not_created"
        if response is not None and internals.is_ingress_error(response):
            return "lost" if error.status_code == 504 else "not_created"
        return "refused"
    if certificate_problem(error) is not None:
        return "refused"  # nothing was sent, and every resend would meet the same certificate
    if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return "not_created"
    if isinstance(error, (httpx.ProxyError, httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return "refused"  # stopped before the request could be sent, by something a resend would not fix
    if isinstance(error, (httpx.TransportError, httpx.DecodingError)):
        return "lost"
    return "refused"


def attempt_timeout(endpoint_id: str, default: float, deadline: float | None) -> float:
    """Seconds the next submit attempt may take: the client's timeout, cut to what is left before ``deadline`` (the
    submit's reservation lease). Raises when nothing is left: no attempt is started, so nothing was created."""
    if deadline is None:
        return default
    left = deadline - time.time()
    if left <= 0:
        from airflow_provider_sam3.exceptions import FalTransientError

        raise FalTransientError(
            "the submit could not be sent before its reservation ended (fal kept refusing it or was unreachable); "
            "fal created nothing, so it can be sent again",
            endpoint_id=endpoint_id,
        )
    return min(default, left)


def lease_ended(endpoint_id: str, error: BaseException) -> Sam3ProviderError:
    """The submit POST was still going when its time was up (its reservation's lease, or the per-call deadline):
    fal may have created the request."""
    return outcome_unknown(endpoint_id, error, "it was still waiting for fal's answer when its time was up")


def submitted_reference(endpoint_id: str, response: Any, queue_host: str, scrubber: Scrubber) -> RequestReference:
    """The reference in fal's answer to a submit, as fal-client reads it (the answer's URLs are used verbatim, once
    checked to be the queue host's, and refused when they carry the key: they go into XCom, logs and kwargs)."""
    from airflow_provider_sam3.hooks.trust import check_reference
    from airflow_provider_sam3.models.reference import RequestReference

    try:
        handle = internals.submitted_handle(response)
    except Exception as error:  # noqa: BLE001 - fal accepted the POST but its answer is unreadable
        raise outcome_unknown(
            endpoint_id, error, f"its answer (HTTP {response.status_code}) could not be read"
        ) from error
    reference = RequestReference(
        endpoint_id=endpoint_id,
        request_id=handle.request_id,
        status_url=handle.status_url,
        response_url=handle.response_url,
        cancel_url=handle.cancel_url,
        submitted_at=time.time(),
    )
    check_reference(
        reference,
        queue_host,
        where="fal's answer to the submit",
        note=" (fal created the request and may bill it: cancel it in fal's dashboard)",
    )
    if any(
        scrubber.leaks(getattr(reference, name)) for name in ("request_id", "status_url", "response_url", "cancel_url")
    ):
        from airflow_provider_sam3.hooks.trust import untrusted

        raise untrusted(
            "fal's answer to the submit echoes the API key in its request id or URLs; they are refused, so the key "
            "reaches no log, XCom or trigger. fal created the request and may bill it: cancel it in fal's dashboard",
            endpoint_id=endpoint_id,
            request_id=None,
        )
    return reference


def submit_retry_delay(
    log: Any,
    endpoint_id: str,
    error: Exception,
    attempt: int,
    *,
    max_delay: float,
    scrubber: Scrubber | None = None,
) -> float:
    """The pause before resending a submit that failed with ``error`` (sync and async alike); raises when it must not
    be resent (fal may have created it, or it was refused for good). ``scrubber`` cleans fal's text of the key, in
    the error raised and in ``error`` itself."""
    from airflow_provider_sam3.hooks.errors import translate
    from airflow_provider_sam3.hooks.queue_requests import raise_mapped

    clean: Callable[[Any], str] = str
    if scrubber is not None:
        scrubber.exception(error)
        clean = scrubber.text
    fault = submit_fault(error)
    if fault == "lost":
        edge_timeout = getattr(error, "status_code", None) == 504
        what = "fal's edge gave up waiting for the queue's answer" if edge_timeout else "its answer was lost"
        raise outcome_unknown(endpoint_id, error, what) from error
    if fault != "not_created" or attempt >= internals.max_attempts():
        raise_mapped(translate(error, endpoint_id=endpoint_id, request_id=None, action="submit", clean=clean), error)
    delay = internals.retry_delay(attempt, max_delay)
    log.warning(
        "Submit of %s was refused or never reached fal's queue (%s), so fal created nothing; "
        "sending it again in %.1f s (attempt %d of %d)",
        endpoint_id,
        describe_error(error),
        delay,
        attempt + 1,
        internals.max_attempts(),
    )
    return delay


def describe_error(error: BaseException) -> str:
    from fal_client import FalClientHTTPError

    if isinstance(error, FalClientHTTPError):
        return f"HTTP {error.status_code}"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def outcome_unknown(endpoint_id: str, error: BaseException, what: str) -> Sam3ProviderError:
    from airflow_provider_sam3.exceptions import FalSubmitOutcomeUnknownError

    return FalSubmitOutcomeUnknownError(
        f"submit sent the request but {what} ({describe_error(error)}): fal may have created the request, and will "
        "bill it, though its id is unknown. It was not resubmitted automatically, to avoid paying twice. Look for it "
        "in fal's dashboard (its request history) before running it again; a retry of the task submits a new request",
        endpoint_id=endpoint_id,
    )
