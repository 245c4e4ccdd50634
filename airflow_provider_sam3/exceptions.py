"""The errors users of the provider see.

Two families: ``InputValidationError`` is raised before anything is sent to fal (no money spent), and
``FalRequestError`` describes what fal answered for one request. Every error is a sentence a user can act on;
none of them ever carries the API key. ``retryable`` tells callers whether trying again (the call, or a new
submission of the same request) may succeed; a start timeout is retryable only by resubmitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BatchHalt",
    "FalAppError",
    "FalAuthenticationError",
    "FalBalanceExhaustedError",
    "FalDeadlineExceededError",
    "FalNoMasksError",
    "FalOutputRefusedError",
    "FalRateLimitedError",
    "FalRequestCancelledError",
    "FalRequestError",
    "FalRequestNotFoundError",
    "FalResultUnavailableError",
    "FalStartTimeoutError",
    "FalSubmitOutcomeUnknownError",
    "FalTlsError",
    "FalTransientError",
    "FalUntrustedUrlError",
    "FalValidationError",
    "InputValidationError",
    "InvalidImageError",
    "Sam3ProviderError",
    "StateStoreRefusedError",
    "UnknownParameterError",
]


class Sam3ProviderError(Exception):
    """Base class of every error raised by airflow-provider-sam3."""

    retryable: bool = False


class InputValidationError(Sam3ProviderError, ValueError):
    """A request was refused locally, before it reached fal: ``field`` names what is wrong."""

    fields: list[str]
    """Every offending field; set only on errors built by ``from_errors``."""

    def __init__(self, field: str, message: str, *, allowed: str | None = None) -> None:
        self.field = field
        self.allowed = allowed
        text = f"{field}: {message}"
        if allowed:
            text += f" (allowed: {allowed})"
        super().__init__(text)

    @classmethod
    def from_errors(cls, endpoint_id: str, errors: Iterable[Mapping[str, Any]]) -> InputValidationError:
        """Build one error from pydantic's ``errors()`` list, naming every offending field."""
        items = list(errors)
        fields = [_location(e.get("loc", ())) for e in items]
        lines = [f"{f}: {_readable(e)}" for f, e in zip(fields, items)]
        error = cls(fields[0] if fields else "input", "; ".join(lines) if lines else "invalid input")
        error.args = (f"Invalid input for {endpoint_id}, nothing was sent to fal: " + "; ".join(lines),)
        error.fields = fields
        return error


class UnknownParameterError(InputValidationError, TypeError):
    """An operator was given a keyword argument it does not take (a typo, usually), when the DAG file is parsed."""


class InvalidImageError(InputValidationError):
    """An image given to the provider is empty, truncated, too large, or not an accepted format."""


def _location(loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "input"


def _readable(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if "input" in error and error.get("type") not in ("missing",):
        given = repr(error["input"])
        if len(given) > 80:
            given = given[:77] + "..."
        message += f" (got {given})"
    return message


class FalRequestError(Sam3ProviderError):
    """fal refused or failed one request. Names the endpoint and request id; never the key."""

    def __init__(
        self,
        message: str,
        *,
        endpoint_id: str | None = None,
        request_id: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.detail = message
        self.endpoint_id = endpoint_id
        self.request_id = request_id
        self.status_code = status_code
        self.error_type = error_type
        if retryable is not None:
            self.retryable = retryable
        where = endpoint_id or "fal"
        if request_id:
            where += f" request {request_id}"
        code = f" (HTTP {status_code}{', ' + error_type if error_type else ''})" if status_code else ""
        super().__init__(f"{where}: {message}{code}")

    def for_request(self, endpoint_id: str | None, request_id: str | None) -> FalRequestError:
        """The same error naming ``endpoint_id`` and ``request_id`` (when it named no request yet), chained to it."""
        if self.request_id is not None or request_id is None:
            return self
        named = type(self).__new__(type(self))
        named.__dict__.update(self.__dict__)
        FalRequestError.__init__(
            named,
            getattr(self, "detail", str(self)),
            endpoint_id=endpoint_id,
            request_id=request_id,
            status_code=self.status_code,
            error_type=self.error_type,
            retryable=self.retryable,
        )
        named.__cause__ = self
        return named


class FalAuthenticationError(FalRequestError):
    """401: the key is missing, wrong or revoked. Fix the ``fal`` connection or ``FAL_KEY``."""


class FalBalanceExhaustedError(FalAuthenticationError):
    """403: the fal account is locked, usually because its balance is exhausted."""


class FalValidationError(FalRequestError):
    """422: fal's app rejected the input; ``details`` holds fal's field errors."""

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        self.details = details or []
        super().__init__(message, **kwargs)


class FalNoMasksError(FalValidationError):
    """422 "No masks generated" from image-rle: the prompt matched nothing in the image."""


class FalResultUnavailableError(FalRequestError):
    """400/404: the result is not ready, has expired, or fal does not know the request."""


class FalRequestNotFoundError(FalResultUnavailableError):
    """404: fal does not know this request (it vanished, or its result expired)."""


class FalRateLimitedError(FalRequestError):
    """429: too many requests for the account right now."""

    retryable = True


class FalTransientError(FalRequestError):
    """A passing infrastructure fault: nginx 502/503/504, a ``runner_*`` error, a dropped connection."""

    retryable = True


class FalSubmitOutcomeUnknownError(FalTransientError):
    """A submit's answer was lost after its body may have reached fal (read error, timeout, dropped response).

    fal may have created (and will bill) the request, whose id is then unknown. The hook does not resubmit it, so
    that one submit never pays twice; submitting again is the caller's choice (an Airflow task retry does it).
    """


class FalAppError(FalRequestError):
    """500 or a COMPLETED status carrying ``error``: the model app itself failed. fal does not bill it."""


class FalStartTimeoutError(FalRequestError):
    """504 with ``X-Fal-Request-Timeout-Type``: the request did not start before its start deadline."""

    retryable = True


class FalRequestCancelledError(FalRequestError):
    """499: the request was cancelled before it produced a result."""


class FalDeadlineExceededError(FalRequestError):
    """The provider's own deadline for a request passed; the remote request was cancelled."""


class FalUntrustedUrlError(FalRequestError):
    """A URL the key would follow names another host or scheme than the connection's queue host (from a request
    reference, a template, XCom or fal's own answer), or a request id is not one fal issues. Nothing was sent to it.

    Final: the same reference would be refused again, so a retry cannot help.
    """

    retryable = False


class FalTlsError(FalRequestError):
    """A host's TLS certificate could not be verified: nothing was sent over that connection. Final: a retry meets
    the same certificate; the fix is the trust store of the process (``SSL_CERT_FILE``), see the error's text."""

    retryable = False


class FalOutputRefusedError(FalRequestError):
    """An output file was not fetched: its URL is not https or a data URI, resolves to a private, loopback or
    link-local address that is neither the queue host nor an allowed media host, redirects to one, or is larger
    than the connection's size cap. Final: fetching it again would be refused again.
    """

    retryable = False


class StateStoreRefusedError(Sam3ProviderError):
    """Airflow's task state store refused a write: Airflow no longer accepts this try's writes (the scheduler failed
    it while it ran, a clear replaced it, or the worker's supervisor is gone). The try stops at once without sending
    anything more; what it could not record is handed to the next try (or cancelled at fal). Retryable: the next try
    goes on from what was saved."""

    retryable = True

    def __init__(self, key: str, error: BaseException) -> None:
        self.key = key
        super().__init__(
            f"the task state store refused to save {key!r} ({type(error).__name__}: {error}): Airflow no longer "
            "accepts this try's writes (it was failed, cleared or replaced while running). This try stops without "
            "sending anything more to fal; the next try goes on from what was saved"
        )


class BatchHalt(Exception):
    """Ends a batch's try (raised by the batch engine, turned into the task's failure by the operator): ``error``
    says why; ``final`` when a retry could not change it."""

    def __init__(self, error: Exception, *, final: bool) -> None:
        super().__init__(str(error))
        self.error, self.final = error, final
