"""Turn what fal-client raises into the provider's errors: one class per thing a user can do about it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_sam3 import exceptions as exc

__all__ = [
    "INGRESS_CODES",
    "MAX_DETAILS",
    "REQUEST_ID_HEADER",
    "TIMEOUT_TYPE_HEADER",
    "TLS_ADVICE",
    "certificate_error",
    "certificate_problem",
    "translate",
]

TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"
REQUEST_ID_HEADER = "x-fal-request-id"
INGRESS_CODES = (502, 503, 504)


MAX_DETAILS = 50
"""Field errors kept from one 422 answer."""


def _detail_lines(detail: Any, clean: Callable[[Any], str]) -> tuple[str, list[dict[str, Any]]]:
    """fal's ``detail`` is a string or a FastAPI-style list of field errors; list each field (cleaned)."""
    if isinstance(detail, list):
        items = []
        for item in [d for d in detail if isinstance(d, dict)][:MAX_DETAILS]:
            raw_loc = item.get("loc")
            loc: list[Any] = raw_loc if isinstance(raw_loc, list) else []
            items.append(
                {
                    "loc": [clean(p) if isinstance(p, str) else p for p in loc if isinstance(p, (str, int))],
                    "msg": clean(item.get("msg", "invalid")),
                    "type": clean(item.get("type", "")),
                }
            )
        lines = [f"{'.'.join(str(p) for p in i['loc'] if p != 'body') or 'input'}: {i['msg']}" for i in items]
        return clean("; ".join(lines) or str(detail)), items
    return clean(detail), []


def _body_detail(error: Any) -> Any:
    response = getattr(error, "response", None)
    try:
        body = response.json() if response is not None else None
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return getattr(error, "message", str(error))


TLS_ADVICE = (
    "Python checks certificates against SSL_CERT_FILE, or certifi's bundle when it is unset: against the fal "
    "emulator, every Airflow process (scheduler, workers, triggerer, api-server) needs SSL_CERT_FILE set to the "
    "emulator's certificate (its env file names it); behind a TLS-inspecting proxy, to a bundle with the proxy's CA"
)


def certificate_problem(error: BaseException) -> str | None:
    """Why TLS verification failed, when it did anywhere in ``error``'s chain (httpx wraps the ``ssl`` error)."""
    import ssl

    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or "certificate verify failed")
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return None


def certificate_error(error: BaseException, what: str, **where: Any) -> exc.FalTlsError | None:
    """The error a user can act on when ``error`` is a failed certificate check during ``what`` (a sentence
    fragment naming the call and host); ``None`` when it is not one."""
    problem = certificate_problem(error)
    if problem is None:
        return None
    return exc.FalTlsError(
        f"{what} stopped: the host's TLS certificate could not be verified ({problem}). {TLS_ADVICE}", **where
    )


def translate(
    error: BaseException,
    *,
    endpoint_id: str | None,
    request_id: str | None,
    action: str,
    clean: Callable[[Any], str] = str,
) -> exc.Sam3ProviderError:
    """Map one exception from fal-client or httpx to a provider error naming the endpoint and request. Every text
    taken from fal's answer goes through ``clean`` (the hook's ``guards.text.Scrubber.text``: the key removed, the
    length capped)."""
    import httpx
    from fal_client import FalClientHTTPError

    where: dict[str, Any] = {"endpoint_id": endpoint_id, "request_id": request_id}
    if isinstance(error, exc.Sam3ProviderError):
        return error
    if isinstance(error, httpx.TransportError):
        tls = certificate_error(error, f"{action} at fal's queue{_host_of(error)}", **where)
        if tls is not None:
            return tls
    if isinstance(error, httpx.TimeoutException):
        return exc.FalTransientError(
            f"{action} timed out talking to fal's queue ({type(error).__name__}); it will be retried", **where
        )
    if isinstance(error, httpx.TransportError):
        return exc.FalTransientError(
            f"{action} lost its connection to fal's queue{_host_of(error)} ({type(error).__name__}: {clean(error)}); "
            "it is retried, and if it persists check the network or the connection's queue host",
            **where,
        )
    if not isinstance(error, FalClientHTTPError):
        return exc.FalRequestError(f"{action} failed: {type(error).__name__}: {clean(error)}", **where)

    code = error.status_code
    headers = {k.lower(): clean(v) for k, v in (error.response_headers or {}).items()}
    error_type = clean(error.error_type) if error.error_type is not None else None
    message, details = _detail_lines(_body_detail(error), clean)
    common = {**where, "status_code": code, "error_type": error_type}

    if code == 401:
        return exc.FalAuthenticationError(
            f"fal rejected the API key during {action}; check the 'fal' connection's password or FAL_KEY", **common
        )
    if code == 403:
        if "balance" in message.lower() or "locked" in message.lower():
            return exc.FalBalanceExhaustedError(
                f"the fal account is locked ({message}); top up the balance at fal.ai/dashboard/billing", **common
            )
        return exc.FalAuthenticationError(f"fal refused {action} ({message}); the key lacks access", **common)
    if code == 422:
        cls = exc.FalNoMasksError if "no masks generated" in message.lower() else exc.FalValidationError
        hint = "the prompt matched nothing in the image" if cls is exc.FalNoMasksError else "fix these fields"
        return cls(f"fal rejected the input: {message} ({hint})", details=details, **common)
    if code == 404:
        return exc.FalRequestNotFoundError(
            f"fal does not know this request during {action}: it vanished or its result expired ({message})", **common
        )
    if code == 400:
        return exc.FalResultUnavailableError(f"the result is not available yet ({message})", **common)
    if code == 429:
        return exc.FalRateLimitedError(f"fal is rate limiting this account during {action} ({message})", **common)
    if code == 499:
        return exc.FalRequestCancelledError("the request was cancelled before it produced a result", **common)
    if code == 504 and TIMEOUT_TYPE_HEADER in headers:
        return exc.FalStartTimeoutError(
            f"the request did not start before its start deadline ({headers[TIMEOUT_TYPE_HEADER]} timeout)", **common
        )
    if (error_type or "").startswith("runner_") or error_type in ("startup_timeout", "request_timeout"):
        return exc.FalTransientError(f"fal's runner failed during {action} ({message})", **common)
    if code in INGRESS_CODES:
        origin = "fal's app" if REQUEST_ID_HEADER in headers else "fal's gateway"
        return exc.FalTransientError(f"{origin} is temporarily unavailable during {action}", **common)
    if code == 500:
        return exc.FalAppError(f"the model app failed ({message}); fal does not bill failed requests", **common)
    if code >= 500:
        return exc.FalTransientError(f"fal answered a server error during {action} ({message})", **common)
    return exc.FalRequestError(f"fal refused {action} ({message})", **common)


def _host_of(error: Any) -> str:
    """`` at host:port`` of the request an httpx error carries, or nothing."""
    try:
        return f" at {error.request.url.host}:{error.request.url.port or 443}"
    except RuntimeError:  # httpx raises when the exception carries no request
        return ""
