"""The ``fal`` connection's Test button: one cheap authenticated call, answered in words a user can act on."""

from __future__ import annotations

from collections.abc import Callable

from airflow_provider_sam3.exceptions import Sam3ProviderError
from airflow_provider_sam3.hooks.errors import certificate_error
from airflow_provider_sam3.hooks.settings import FalSettings

__all__ = ["PROBE_PATH", "connection_test"]

PROBE_PATH = "fal-ai/sam-3/requests/00000000-0000-0000-0000-000000000000/status"
"""The status of a request id that cannot exist: authenticated, free, and answered 404 when the key is good."""


def connection_test(settings: Callable[[], FalSettings], conn_id: str) -> tuple[bool, str]:
    """``(ok, message)`` for the connection whose settings ``settings()`` resolves (``FalHook.test_connection``)."""
    import httpx

    try:
        resolved = settings()
        key = resolved.require_key(conn_id)
    except Sam3ProviderError as error:
        return False, str(error)
    host = resolved.queue_host
    try:
        response = httpx.get(f"https://{host}/{PROBE_PATH}", headers={"Authorization": f"Key {key}"}, timeout=10.0)
    except httpx.HTTPError as error:
        tls = certificate_error(error, f"Connecting to fal's queue at {host}")
        if tls is not None:
            return False, tls.detail
        return False, f"Cannot reach fal's queue at {host}: {type(error).__name__}. Check the host."
    if response.status_code == 401:
        return False, f"fal rejected the API key (from {resolved.key_source}). Check the key."
    if response.status_code == 403:
        return False, "The key is valid but the account is locked (exhausted balance?). Check fal's billing page."
    if response.status_code in (200, 202, 404):
        return True, f"Connected to {host}; the API key (from {resolved.key_source}) is accepted."
    return False, f"Unexpected answer from {host}: HTTP {response.status_code}."
