"""Turn what fal-client raises into the provider's errors: one class per thing a user can do about it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3 import exceptions as exc

if TYPE_CHECKING:
    from airflow_provider_sam3.guards.text import Scrubber

__all__ = [
    "INGRESS_CODES",
    "MAX_DETAILS",
    "REQUEST_ID_HEADER",
    "TIMEOUT_TYPE_HEADER",
    "TLS_ADVICE",
    "certificate_error",
    "certificate_problem",
    "is_runner_fault",
    "translate",
    "translate_scrubbed",
]

TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"
REQUEST_ID_HEADER = "x-fal-request-id"
INGRESS_CODES = (502, 503, 504)
RUNNER_ERROR_TYPES = ("startup_timeout", "request_timeout")


def is_runner_fault(error_type: str | None) -> bool:
    """Whether fal's ``error_type`` says its runner failed (not the app, not the input): worth another attempt."""
    return (error_type or "").startswith("runner_") or error_type in RUNNER_ERROR_TYPES


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
        return _transport_error(error, action, clean, where)
    if not isinstance(error, FalClientHTTPError):
        return exc.FalRequestError(f"{action} failed: {type(error).__name__}: {clean(error)}", **where)
    answer = _Answer.read(error, action, clean, where)
    by_code = _BY_CODE.get(answer.code)
    return by_code(answer) if by_code is not None else _server_error(answer)


def translate_scrubbed(
    error: BaseException, scrubber: Scrubber, *, endpoint_id: str | None, request_id: str | None, action: str
) -> exc.Sam3ProviderError:
    """``translate`` with a connection's scrubber: no text from fal carries the key into the error, nor stays in the
    original one it is raised from."""
    scrubber.exception(error)
    return translate(error, endpoint_id=endpoint_id, request_id=request_id, action=action, clean=scrubber.text)


def _transport_error(
    error: BaseException, action: str, clean: Callable[[Any], str], where: dict[str, Any]
) -> exc.Sam3ProviderError:
    """A failed certificate check, a timeout, or a lost connection (httpx's ``TransportError``, its timeouts too)."""
    import httpx

    tls = certificate_error(error, f"{action} at fal's queue{_host_of(error)}", **where)
    if tls is not None:
        return tls
    if isinstance(error, httpx.TimeoutException):
        return exc.FalTransientError(
            f"{action} timed out talking to fal's queue ({type(error).__name__}); it will be retried", **where
        )
    return exc.FalTransientError(
        f"{action} lost its connection to fal's queue{_host_of(error)} ({type(error).__name__}: {clean(error)}); "
        "it is retried, and if it persists check the network or the connection's queue host",
        **where,
    )


@dataclass(frozen=True)
class _Answer:
    """What one HTTP error answer from fal says, its texts cleaned."""

    action: str
    code: int
    headers: dict[str, str]
    message: str
    details: list[dict[str, Any]]
    common: dict[str, Any]
    """The error's keywords: where (endpoint and request), the status code and fal's error type."""

    @classmethod
    def read(cls, error: Any, action: str, clean: Callable[[Any], str], where: dict[str, Any]) -> _Answer:
        headers = {k.lower(): clean(v) for k, v in (error.response_headers or {}).items()}
        error_type = clean(error.error_type) if error.error_type is not None else None
        message, details = _detail_lines(_body_detail(error), clean)
        common = {**where, "status_code": error.status_code, "error_type": error_type}
        return cls(action, error.status_code, headers, message, details, common)

    @property
    def error_type(self) -> str | None:
        return self.common["error_type"]


def _forbidden(a: _Answer) -> exc.Sam3ProviderError:
    if "balance" in a.message.lower() or "locked" in a.message.lower():
        return exc.FalBalanceExhaustedError(
            f"the fal account is locked ({a.message}); top up the balance at fal.ai/dashboard/billing", **a.common
        )
    return exc.FalAuthenticationError(f"fal refused {a.action} ({a.message}); the key lacks access", **a.common)


def _rejected_input(a: _Answer) -> exc.Sam3ProviderError:
    cls = exc.FalNoMasksError if "no masks generated" in a.message.lower() else exc.FalValidationError
    hint = "the prompt matched nothing in the image" if cls is exc.FalNoMasksError else "fix these fields"
    return cls(f"fal rejected the input: {a.message} ({hint})", details=a.details, **a.common)


_BY_CODE: dict[int, Callable[[_Answer], exc.Sam3ProviderError]] = {
    401: lambda a: exc.FalAuthenticationError(
        f"fal rejected the API key during {a.action}; check the 'fal' connection's password or FAL_KEY", **a.common
    ),
    403: _forbidden,
    422: _rejected_input,
    404: lambda a: exc.FalRequestNotFoundError(
        f"fal does not know this request during {a.action}: it vanished or its result expired ({a.message})",
        **a.common,
    ),
    400: lambda a: exc.FalResultUnavailableError(f"the result is not available yet ({a.message})", **a.common),
    429: lambda a: exc.FalRateLimitedError(
        f"fal is rate limiting this account during {a.action} ({a.message})", **a.common
    ),
    499: lambda a: exc.FalRequestCancelledError("the request was cancelled before it produced a result", **a.common),
}
"""Answers whose status code alone says what happened (checked before anything else)."""


def _server_error(a: _Answer) -> exc.Sam3ProviderError:
    """Any other answer: a start timeout, a failed runner, fal's edge, the app, or a refusal."""
    if a.code == 504 and TIMEOUT_TYPE_HEADER in a.headers:
        return exc.FalStartTimeoutError(
            f"the request did not start before its start deadline ({a.headers[TIMEOUT_TYPE_HEADER]} timeout)",
            **a.common,
        )
    if is_runner_fault(a.error_type):
        return exc.FalTransientError(f"fal's runner failed during {a.action} ({a.message})", **a.common)
    if a.code in INGRESS_CODES:
        origin = "fal's app" if REQUEST_ID_HEADER in a.headers else "fal's gateway"
        return exc.FalTransientError(f"{origin} is temporarily unavailable during {a.action}", **a.common)
    if a.code == 500:
        return exc.FalAppError(f"the model app failed ({a.message}); fal does not bill failed requests", **a.common)
    if a.code >= 500:
        return exc.FalTransientError(f"fal answered a server error during {a.action} ({a.message})", **a.common)
    return exc.FalRequestError(f"fal refused {a.action} ({a.message})", **a.common)


def _host_of(error: Any) -> str:
    """`` at host:port`` of the request an httpx error carries, or nothing."""
    try:
        return f" at {error.request.url.host}:{error.request.url.port or 443}"
    except RuntimeError:  # httpx raises when the exception carries no request
        return ""
