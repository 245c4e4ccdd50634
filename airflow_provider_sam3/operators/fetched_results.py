"""What every waiting task does once fal says COMPLETED: fetch, parse, copy outputs, build the XCom document."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NoReturn

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.exceptions import (
    FalAuthenticationError,
    FalDeadlineExceededError,
    FalOutputRefusedError,
    FalRequestError,
    FalUntrustedUrlError,
    FalValidationError,
    InputValidationError,
    Sam3ProviderError,
)
from airflow_provider_sam3.models.reference import RequestReference

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.documents import ResultDocument
    from airflow_provider_sam3.operators.cached_results import CacheSlot

__all__ = [
    "NOT_WORTH_RETRYING",
    "NOT_WORTH_RETRYING_NAMES",
    "RAW_SCHEMA_VERSION",
    "as_task_error",
    "fetch_result_document",
    "raise_for_event",
    "raise_task_error",
    "root_cause",
]

RAW_SCHEMA_VERSION = 1
NOT_WORTH_RETRYING = (
    FalAuthenticationError,
    FalValidationError,
    FalUntrustedUrlError,
    FalOutputRefusedError,
    InputValidationError,
)
NOT_WORTH_RETRYING_NAMES = frozenset(
    [
        "FalAuthenticationError",
        "FalBalanceExhaustedError",
        "FalValidationError",
        "FalNoMasksError",
        "FalUntrustedUrlError",
        "FalOutputRefusedError",
        "InputValidationError",
        "InvalidImageError",
    ]
)
"""A cancelled request is worth a retry: a clear racing its own cancel, or a cancel from elsewhere, submits anew."""


def as_task_error(error: Exception, *, retry_useless: bool | None = None) -> Exception:
    """Errors a retry cannot fix (bad key, exhausted balance, rejected input, a refused URL) fail the task without
    retries: an ``AirflowFailException`` whose ``__cause__`` is ``error``. Other errors are returned as they are.

    Raise the result with ``raise_task_error(error)`` (or plainly ``raise as_task_error(error)``), never
    ``raise as_task_error(error) from error``: when the error itself is returned, ``from error`` would make it its
    own cause, dropping its real cause (the httpx error under it) and sending chain walkers round in a loop.
    """
    if retry_useless is None:
        retry_useless = isinstance(error, NOT_WORTH_RETRYING)
    if not retry_useless:
        return error
    from airflow.sdk.exceptions import AirflowFailException

    failure = AirflowFailException(f"{error} (not retried: a retry would fail the same way, and may cost money)")
    failure.__cause__ = error
    return failure


def raise_task_error(error: Exception, *, retry_useless: bool | None = None) -> NoReturn:
    """Raise ``as_task_error(error)`` keeping ``error``'s own cause chain intact."""
    task_error = as_task_error(error, retry_useless=retry_useless)
    if task_error is error:
        raise error
    raise task_error from error


def root_cause(error: BaseException) -> BaseException:
    """The innermost cause of ``error`` (``__cause__``, else ``__context__``), safe on cyclic chains."""
    seen = {id(error)}
    while True:
        following = error.__cause__ or error.__context__
        if following is None or id(following) in seen:
            return error
        seen.add(id(following))
        error = following


def raise_for_event(event: dict[str, Any] | None) -> RequestReference:
    """Validate a trigger event and return its reference; raise the error it describes."""
    if not isinstance(event, dict) or event.get("status") not in ("completed", "timeout", "error"):
        raise FalRequestError(f"the trigger sent an event this provider does not understand: {event!r}")
    reference = RequestReference.from_dict(event["reference"])
    if event["status"] == "timeout":
        raise FalDeadlineExceededError(
            event.get("message") or "deadline passed",
            endpoint_id=reference.endpoint_id,
            request_id=reference.request_id,
        )
    if event["status"] == "error":
        error = _rebuilt_error(event, reference)
        raise as_task_error(error, retry_useless=event.get("error_class") in NOT_WORTH_RETRYING_NAMES)
    return reference


def _rebuilt_error(event: dict[str, Any], reference: RequestReference) -> FalRequestError:
    """The trigger's error as the class the worker path raises (the event carries its name and message only).

    The message already names the endpoint and request, so it is used as is (no second "fal: " prefix).
    """
    from airflow_provider_sam3 import exceptions

    message = event.get("message") or "failed while waiting"
    cls = getattr(exceptions, str(event.get("error_class") or ""), None)
    if not (isinstance(cls, type) and issubclass(cls, FalRequestError)):
        return FalRequestError(
            message,
            endpoint_id=reference.endpoint_id,
            request_id=reference.request_id,
            retryable=event.get("retryable"),
        )
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.endpoint_id, error.request_id = reference.endpoint_id, reference.request_id
    error.status_code, error.error_type = None, None
    if isinstance(error, FalValidationError):
        error.details = []
    if event.get("retryable") is not None:
        error.retryable = bool(event["retryable"])
    return error


def fetch_result_document(
    hook: FalHook,
    reference: RequestReference,
    *,
    image: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    output_path: Any = None,
    log: Any = None,
    cache: CacheSlot | None = None,
) -> dict[str, Any]:
    """Fetch a completed request's output and turn it into the task's XCom document (copying outputs first); keep
    it in ``cache`` when given."""
    try:
        output = hook.result(reference)
    except Sam3ProviderError as error:
        raise_task_error(error)
    completed_at = time.time()
    endpoint = ENDPOINTS.get(reference.endpoint_id)
    if endpoint is None:
        return {
            "schema_version": RAW_SCHEMA_VERSION,
            "kind": "fal.raw",
            "endpoint_id": reference.endpoint_id,
            "request_id": reference.request_id,
            "output": output,
        }
    result = _built_result(endpoint, output, reference, image, completed_at, metrics)
    if output_path is not None:
        result = _copied_outputs(result, output, output_path, hook, reference)
    if cache is not None:
        from airflow_provider_sam3.operators.cached_results import remember_result

        remember_result(cache, hook=hook, reference=reference, output=output, result=result, metrics=metrics, log=log)
    document = result.model_dump(mode="json")
    if log is not None:
        cost = document.get("cost_usd")
        log.info(
            "fal %s request %s completed; fal charges %s",
            reference.endpoint_id,
            reference.request_id,
            f"${cost:.4f}" if cost is not None else "an unpublished price",
        )
    return document


def _built_result(
    endpoint: Endpoint,
    output: Any,
    reference: RequestReference,
    image: dict[str, Any] | None,
    completed_at: float,
    metrics: dict[str, Any] | None,
) -> ResultDocument:
    """The result model of a SAM 3 endpoint's output; an output it cannot read is a ``FalRequestError``."""
    from airflow_provider_sam3.models.results import build_result

    try:
        return build_result(
            endpoint,
            output,
            reference=reference,
            image=image,
            completed_at=completed_at,
            inference_seconds=(metrics or {}).get("inference_time"),
        )
    except ValueError as error:
        raise FalRequestError(
            f"fal returned an output this provider cannot read ({error}); please report it",
            endpoint_id=reference.endpoint_id,
            request_id=reference.request_id,
        ) from error


def _copied_outputs(
    result: ResultDocument, output: Any, output_path: Any, hook: FalHook, reference: RequestReference
) -> ResultDocument:
    """``result`` with every output file copied under ``output_path`` (``storage.outputs.copy_outputs``)."""
    from airflow_provider_sam3.storage.outputs import copy_outputs

    try:
        return copy_outputs(
            result,
            output_path,
            download=hook.download,
            output_json=output,
            stream=getattr(hook, "download_to", None),
        )
    except FalRequestError as error:
        raise_task_error(error.for_request(reference.endpoint_id, reference.request_id))
