"""Where the hook finds its key, queue host and timeouts: the Airflow connection first, then fal's variables.

Precedence (documented in the README):
1. the Airflow connection ``fal_conn_id`` (default ``fal_default``): password = API key, host = queue host,
   extra ``request_timeout``, ``poll_interval``, ``max_poll_interval``, ``media_hosts`` (hosts outputs may also
   be fetched from when they resolve to private addresses), ``max_output_bytes`` (per-output size cap),
   ``result_cache`` (the result cache folder the operators use when they set none);
2. if that connection does not exist, or has no password: ``FAL_KEY``, then ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``
   (fal-client's own order), and ``FAL_QUEUE_RUN_HOST`` for the host.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_CONN_ID",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "DEFAULT_MAX_POLL_INTERVAL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_QUEUE_HOST",
    "DEFAULT_REQUEST_TIMEOUT",
    "FalSettings",
    "MAX_REQUEST_TIMEOUT",
    "MIN_POLL_INTERVAL",
    "MIN_SUBMIT_LEASE",
    "key_from_environment",
    "resolve_settings",
]

DEFAULT_CONN_ID = "fal_default"
DEFAULT_QUEUE_HOST = "queue.fal.run"
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_MAX_POLL_INTERVAL = 30.0
MIN_POLL_INTERVAL = 0.2
DEFAULT_MAX_OUTPUT_BYTES = 512 * 1024 * 1024
"""The largest output file fetched (512 MiB); larger ones are refused (connection extra ``max_output_bytes``)."""
MAX_REQUEST_TIMEOUT = 24 * 3600.0
MIN_SUBMIT_LEASE = 30.0
"""The least time one submit may take in all (its resends of refused attempts included); see ``submit_lease``."""
_KEY_CHARACTERS = re.compile(r"[\x21-\x7e]+")
"""A key is printable ASCII without spaces: anything else cannot go in an HTTP header, and httpx's error for it
would quote the whole header, key included."""


@dataclass(frozen=True)
class FalSettings:
    """Resolved settings for one hook. ``key`` never appears in repr, logs or errors."""

    key: str | None = field(repr=False)
    key_source: str
    queue_host: str
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    max_poll_interval: float = DEFAULT_MAX_POLL_INTERVAL
    media_hosts: tuple[str, ...] = ()
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    result_cache: str | None = None

    @property
    def submit_lease(self) -> float:
        """How long one submit may take in all, resends of refused attempts included: the lease of the durable
        reservation written before it. A later try that finds the reservation unanswered waits this long (plus a
        grace) before it treats that submit as over."""
        return max(MIN_SUBMIT_LEASE, self.request_timeout)

    def require_key(self, conn_id: str) -> str:
        if not self.key:
            from airflow_provider_sam3.exceptions import FalAuthenticationError

            raise FalAuthenticationError(
                f"no fal API key found: connection {conn_id!r} does not exist or has no password, and neither "
                "FAL_KEY nor FAL_KEY_ID/FAL_KEY_SECRET is set. Add a 'fal' connection with the key as its password."
            )
        return self.key


def key_from_environment() -> tuple[str | None, str]:
    """fal-client's own order: ``FAL_KEY``, then ``FAL_KEY_ID:FAL_KEY_SECRET``."""
    if os.environ.get("FAL_KEY"):
        return os.environ["FAL_KEY"], "environment variable FAL_KEY"
    if os.environ.get("FAL_KEY_ID") and os.environ.get("FAL_KEY_SECRET"):
        return f"{os.environ['FAL_KEY_ID']}:{os.environ['FAL_KEY_SECRET']}", "FAL_KEY_ID/FAL_KEY_SECRET"
    return None, "nowhere"


def _checked_key(key: str | None, source: str) -> str | None:
    """The key without the spaces and line breaks a paste adds around it; refused (never quoted) if still unusable."""
    if key is None:
        return None
    key = key.strip()
    if key and not _KEY_CHARACTERS.fullmatch(key):
        from airflow_provider_sam3.exceptions import FalAuthenticationError

        raise FalAuthenticationError(
            f"the fal API key from {source} contains spaces, line breaks or other characters a key never has; "
            "paste the key again (KEY_ID:KEY_SECRET, printable characters only)"
        )
    return key or None


def _number(
    extra: dict[str, Any],
    name: str,
    default: float,
    conn_id: str,
    *,
    minimum: float,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """A numeric extra: a finite number of at least ``minimum`` (NaN, inf, booleans and negatives refused)."""
    from airflow_provider_sam3.models.checked_numbers import finite_number

    value = extra.get(name)
    if value in (None, ""):
        return default
    number = finite_number(
        f"connection {conn_id!r} extra {name}", value, minimum=minimum, maximum=maximum, strict_minimum=strict_minimum
    )
    return number if number is not None else default


def _media_hosts(extra: dict[str, Any], conn_id: str) -> tuple[str, ...]:
    """Extra ``media_hosts``: a list (or comma-separated string) of ``host[:port]`` outputs may come from even
    when they resolve to a private or loopback address."""
    from airflow_provider_sam3.hooks.trust import check_queue_host

    value = extra.get("media_hosts")
    if value in (None, "", []):
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        from airflow_provider_sam3.exceptions import InputValidationError

        raise InputValidationError(
            f"connection {conn_id!r} extra media_hosts",
            f"{value!r} is not a list of hosts",
            allowed="a list of host names (optionally host:port)",
        )
    field = f"connection {conn_id!r} extra media_hosts"
    return tuple(check_queue_host(str(item), field) for item in items if str(item).strip())


def resolve_settings(conn_id: str, connection: Any | None, extra: dict[str, Any] | None) -> FalSettings:
    """Combine a connection (or ``None`` when it does not exist) with the environment."""
    extra = extra or {}
    key = getattr(connection, "password", None) or None
    source = f"Airflow connection {conn_id!r}" if key else ""
    if not key:
        key, source = key_from_environment()
    key = _checked_key(key, source)
    from airflow_provider_sam3.hooks.trust import check_queue_host
    from airflow_provider_sam3.models.checked_numbers import whole_number

    connection_host = getattr(connection, "host", None)
    if connection_host:
        host, host_source = connection_host, f"connection {conn_id!r} host"
    elif os.environ.get("FAL_QUEUE_RUN_HOST"):
        host, host_source = os.environ["FAL_QUEUE_RUN_HOST"], "environment variable FAL_QUEUE_RUN_HOST"
    else:
        host, host_source = DEFAULT_QUEUE_HOST, "default queue host"
    host = check_queue_host(str(host), host_source)
    port = getattr(connection, "port", None)
    if port and not host.rsplit("]", 1)[-1].count(":"):
        port = whole_number(f"connection {conn_id!r} port", port, minimum=1, maximum=65535)
        host = f"{host}:{port}"
    # poll intervals below the floor (0 included) are raised to it, as before; negative, NaN and infinite are refused
    poll_interval = max(_number(extra, "poll_interval", DEFAULT_POLL_INTERVAL, conn_id, minimum=0), MIN_POLL_INTERVAL)
    max_poll_interval = max(
        _number(extra, "max_poll_interval", DEFAULT_MAX_POLL_INTERVAL, conn_id, minimum=0), MIN_POLL_INTERVAL
    )
    max_output = extra.get("max_output_bytes")
    max_output_bytes = (
        DEFAULT_MAX_OUTPUT_BYTES
        if max_output in (None, "")
        else whole_number(f"connection {conn_id!r} extra max_output_bytes", max_output, minimum=1)
    )
    return FalSettings(
        key=key,
        key_source=source,
        queue_host=host,
        request_timeout=_number(
            extra,
            "request_timeout",
            DEFAULT_REQUEST_TIMEOUT,
            conn_id,
            minimum=0,
            maximum=MAX_REQUEST_TIMEOUT,
            strict_minimum=True,
        ),
        poll_interval=poll_interval,
        max_poll_interval=max(max_poll_interval, poll_interval),
        media_hosts=_media_hosts(extra, conn_id),
        max_output_bytes=max_output_bytes,
        result_cache=_result_cache(extra, conn_id),
    )


def _result_cache(extra: dict[str, Any], conn_id: str) -> str | None:
    """The extra ``result_cache``: a folder's path or URL (``/shared/sam3-cache``, ``s3://bucket/cache``)."""
    value = extra.get("result_cache")
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 2000 or not value.isprintable():
        from airflow_provider_sam3.exceptions import InputValidationError

        raise InputValidationError(
            f"connection {conn_id!r} extra result_cache",
            f"{str(value)[:80]!r} is not a folder path or URL",
            allowed="a local path or an object-storage URL such as s3://bucket/sam3-cache",
        )
    return value
