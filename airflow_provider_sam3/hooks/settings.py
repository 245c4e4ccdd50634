"""Where the hook finds its key, queue host and timeouts: the Airflow connection first, then fal's variables.

Precedence (documented in the README):
1. the Airflow connection ``fal_conn_id`` (default ``fal_default``): password = API key, host = queue host,
   extra ``request_timeout``, ``poll_interval``, ``max_poll_interval``;
2. if that connection does not exist, or has no password: ``FAL_KEY``, then ``FAL_KEY_ID`` + ``FAL_KEY_SECRET``
   (fal-client's own order), and ``FAL_QUEUE_RUN_HOST`` for the host.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONN_ID = "fal_default"
DEFAULT_QUEUE_HOST = "queue.fal.run"
DEFAULT_REQUEST_TIMEOUT = 120.0
DEFAULT_POLL_INTERVAL = 2.0
DEFAULT_MAX_POLL_INTERVAL = 30.0
MIN_POLL_INTERVAL = 0.2
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


def _number(extra: dict[str, Any], name: str, default: float, conn_id: str) -> float:
    value = extra.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        from airflow_provider_sam3.exceptions import InputValidationError

        raise InputValidationError(f"connection {conn_id!r} extra {name}", f"{value!r} is not a number") from None
    return max(number, MIN_POLL_INTERVAL) if "poll" in name else number


def resolve_settings(conn_id: str, connection: Any | None, extra: dict[str, Any] | None) -> FalSettings:
    """Combine a connection (or ``None`` when it does not exist) with the environment."""
    extra = extra or {}
    key = getattr(connection, "password", None) or None
    source = f"Airflow connection {conn_id!r}" if key else ""
    if not key:
        key, source = key_from_environment()
    key = _checked_key(key, source)
    host = (getattr(connection, "host", None) or os.environ.get("FAL_QUEUE_RUN_HOST") or DEFAULT_QUEUE_HOST).strip()
    host = host.removeprefix("https://").rstrip("/")
    port = getattr(connection, "port", None)
    if port and ":" not in host:
        host = f"{host}:{port}"
    return FalSettings(
        key=key,
        key_source=source,
        queue_host=host,
        request_timeout=_number(extra, "request_timeout", DEFAULT_REQUEST_TIMEOUT, conn_id),
        poll_interval=_number(extra, "poll_interval", DEFAULT_POLL_INTERVAL, conn_id),
        max_poll_interval=_number(extra, "max_poll_interval", DEFAULT_MAX_POLL_INTERVAL, conn_id),
    )
