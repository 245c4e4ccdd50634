"""Every private or undocumented part of fal-client the hooks use, in one place.

The hooks speak fal's queue through fal-client's own request, retry and header helpers (so they behave as fal-client
does: the same URLs, headers, retries and error parsing), but several of those are private (underscore names,
attributes of its clients) and may change in any release. They are reached only through this module, and
``tests/unit/hooks/test_fal_client_contract.py`` checks each one named in ``CONTRACT`` against the installed
fal-client: a release that renames one, or changes its parameters, fails that test naming the part and
``TESTED_RANGE`` (the range pinned in ``pyproject.toml``), instead of failing a task at run time.

Cheap to import: fal-client and httpx are imported inside the functions.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "CONTRACT",
    "LIFECYCLE_HEADER",
    "STORE_IO_HEADER",
    "TESTED_RANGE",
    "arequest",
    "aretrying_request",
    "async_http",
    "built_async_http",
    "fal_retries",
    "is_ingress_error",
    "lifecycle_header_value",
    "lifecycle_names",
    "max_attempts",
    "max_delay",
    "parse_status",
    "request",
    "retry_delay",
    "retrying_request",
    "storage_urls",
    "submit_headers",
    "submitted_handle",
    "sync_http",
]

TESTED_RANGE = ">=1.0.2,<1.1"
"""The fal-client versions this module was written and tested against (pinned in pyproject.toml)."""

CONTRACT: dict[str, tuple[str, ...] | str] = {
    # "module:name" -> the parameter names a function must take, or what kind of value a constant must be.
    "fal_client.client:_request": ("client", "method", "url", "kwargs"),
    "fal_client.client:_async_request": ("client", "method", "url", "kwargs"),
    "fal_client.client:_maybe_retry_request": ("client", "method", "url", "extra_retry_codes", "kwargs"),
    "fal_client.client:_async_maybe_retry_request": ("client", "method", "url", "extra_retry_codes", "kwargs"),
    "fal_client.client:_should_retry": ("exc", "extra_retry_codes"),
    "fal_client.client:_is_ingress_error": ("response",),
    "fal_client.client:_get_retry_delay": ("num_retry", "base_delay", "max_delay", "backoff_type", "jitter"),
    "fal_client.client:MAX_ATTEMPTS": "int",
    "fal_client.client:BASE_DELAY": "number",
    "fal_client.client:MAX_DELAY": "number",
    "fal_client.client:REST_URL": "str",
    "fal_client.client:CDN_URL": "str",
    "fal_client.client:_UPLOAD_LIFECYCLE_EXPIRATION_VALUES": "dict",
    "fal_client.client:_BaseRequestHandle": ("request_id", "response_url", "status_url", "cancel_url"),
    "fal_client.client:_BaseRequestHandle._parse_status": ("self", "data"),
    "fal_client.client:handle_response_headers": ("response_headers",),
    "fal_client._headers:add_hint_header": ("hint", "headers"),
    "fal_client._headers:add_priority_header": ("priority", "headers"),
    "fal_client._headers:add_timeout_header": ("timeout", "headers"),
    "fal_client._headers:add_fal_app_context_headers": ("headers",),
    "fal_client._headers:Priority": "literal normal low",
    "fal_client.client:SyncClient._client": "cached property (httpx.Client)",
    "fal_client.client:AsyncClient._client": "async cached property (httpx.AsyncClient)",
    "fal_client.client:SyncClient.default_timeout": "number",
    "fal_client.client:AsyncClient.default_timeout": "number",
    "fal_client.client:FalClientHTTPError": "status_code response response_headers error_type message",
}
"""What the hooks rely on, checked by the contract test. Keep it in step with the functions below."""

LIFECYCLE_HEADER = "X-Fal-Object-Lifecycle-Preference"
"""How long fal keeps a request's output media: JSON ``{"expiration_duration_seconds": N}``, written as fal-client
writes it for uploads (its ``_object_lifecycle_headers``; fal-client 1.0.x has no submit parameter for it)."""
STORE_IO_HEADER = "X-Fal-Store-IO"
"""``0`` asks fal not to store the request's inputs and outputs in its request history."""


def _client_module() -> ModuleType:
    import fal_client.client

    return fal_client.client


# ------------------------------------------------------------------ HTTP calls, as fal-client makes them


def sync_http(client: Any) -> Any:
    """The ``httpx.Client`` inside a ``fal_client.SyncClient`` (authenticated, with its transport)."""
    return client._client


async def async_http(client: Any) -> Any:
    """The ``httpx.AsyncClient`` inside a ``fal_client.AsyncClient`` (an async cached property)."""
    return await client._client


def built_async_http(client: Any) -> Any:
    """The ``AsyncClient``'s httpx client if it was ever built (to close it), else ``None``; never builds one."""
    return client.__dict__.get("_client")


def request(http: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One HTTP call, raising fal-client's ``FalClientHTTPError`` on a 4xx/5xx (no retry)."""
    return _client_module()._request(http, method, url, **kwargs)


async def arequest(http: Any, method: str, url: str, **kwargs: Any) -> Any:
    return await _client_module()._async_request(http, method, url, **kwargs)


def retrying_request(http: Any, method: str, url: str, **kwargs: Any) -> Any:
    """One call through fal-client's own retry loop (the one its request handles use)."""
    return _client_module()._maybe_retry_request(http, method, url, **kwargs)


async def aretrying_request(http: Any, method: str, url: str, **kwargs: Any) -> Any:
    return await _client_module()._async_maybe_retry_request(http, method, url, **kwargs)


# ------------------------------------------------------------------ fal-client's retry policy


def fal_retries(error: BaseException) -> bool:
    """Whether fal-client's retry loop already retried this failure (so retrying again would multiply it)."""
    return isinstance(error, Exception) and _client_module()._should_retry(error)


def is_ingress_error(response: Any) -> bool:
    """A 502/503/504 from fal's edge (nginx, no ``x-fal-request-id``): the queue never saw the request."""
    return _client_module()._is_ingress_error(response)


def max_attempts() -> int:
    return int(_client_module().MAX_ATTEMPTS)


def max_delay() -> float:
    """fal-client's synchronous retry delay cap, in seconds."""
    return float(_client_module().MAX_DELAY)


def retry_delay(attempt: int, cap: float) -> float:
    """fal-client's own backoff (exponential with jitter) before attempt ``attempt + 1``."""
    module = _client_module()
    return module._get_retry_delay(attempt, module.BASE_DELAY, cap, "exponential", True)


# ------------------------------------------------------------------ submit headers and answers


def submit_headers(hint: str | None, priority: str | None, start_timeout: float | None) -> dict[str, str]:
    """The queue headers fal-client's ``submit`` sends for these options, built (and checked) by its helpers."""
    from fal_client import _headers

    headers: dict[str, str] = {}
    if hint is not None:
        _headers.add_hint_header(hint, headers)
    if priority is not None:
        # any str goes to fal-client, whose helper refuses a value other than its Priority literals
        _headers.add_priority_header(cast("Any", priority), headers)
    if start_timeout is not None:
        _headers.add_timeout_header(start_timeout, headers)
    _headers.add_fal_app_context_headers(headers)
    return headers


def lifecycle_header_value(seconds: int) -> str:
    """The ``X-Fal-Object-Lifecycle-Preference`` value for media kept ``seconds`` seconds."""
    return json.dumps({"expiration_duration_seconds": seconds})


def lifecycle_names() -> dict[str, int | None]:
    """fal-client's named media lifetimes (``"1h"`` -> 3600, ``"never"`` -> None: fal's default retention)."""
    return dict(_client_module()._UPLOAD_LIFECYCLE_EXPIRATION_VALUES)


def submitted_handle(response: Any) -> Any:
    """The request handle in fal's answer to a submit, read as fal-client's ``submit`` reads it."""
    module = _client_module()
    module.handle_response_headers(response.headers)
    data = response.json()
    return module._BaseRequestHandle(
        request_id=data["request_id"],
        response_url=data["response_url"],
        status_url=data["status_url"],
        cancel_url=data["cancel_url"],
    )


def parse_status(data: Any) -> Any:
    """fal-client's ``Queued``/``InProgress``/``Completed`` for a status body (``ValueError`` on an unknown state)."""
    handle = _client_module()._BaseRequestHandle(request_id="", response_url="", status_url="", cancel_url="")
    return handle._parse_status(data)


def storage_urls() -> dict[str, str]:
    """Where fal-client sends uploads (and the key): its ``REST_URL`` and ``CDN_URL``."""
    module = _client_module()
    return {"REST_URL": str(module.REST_URL), "CDN_URL": str(module.CDN_URL)}
