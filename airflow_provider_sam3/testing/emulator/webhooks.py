"""Deliver fal's completion webhook to loopback URLs (best effort, one attempt, unsigned)."""

from __future__ import annotations

import logging
import ssl
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_sam3.testing.emulator.fetch import LOOPBACK_HOSTS

__all__ = ["WEBHOOK_TIMEOUT_S", "deliverable", "send_webhook", "webhook_payload"]

log = logging.getLogger("airflow_provider_sam3.testing.emulator")
WEBHOOK_TIMEOUT_S = 5.0


def deliverable(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.hostname in LOOPBACK_HOSTS


def webhook_payload(request_id: str, status_code: int, body: Any, error: str | None) -> dict[str, Any]:
    """fal's webhook body: ``status`` OK with the output as payload, or ERROR with the error and the app's body."""
    payload: dict[str, Any] = {
        "request_id": request_id,
        "gateway_request_id": request_id,
        "status": "OK" if 200 <= status_code < 300 else "ERROR",
        "payload": body,
    }
    if payload["status"] == "ERROR":
        payload["error"] = f"Invalid status code: {status_code}" if error is None else error
    return payload


async def send_webhook(url: str, payload: dict[str, Any], cert_file: str) -> bool:
    """POST ``payload`` to ``url``; True when the receiver answered 2xx."""
    import httpx

    context = ssl.create_default_context()
    context.load_verify_locations(cert_file)
    try:
        async with httpx.AsyncClient(verify=context, timeout=WEBHOOK_TIMEOUT_S, trust_env=False) as client:
            response = await client.post(url, json=payload)
        return response.is_success
    except httpx.HTTPError as exc:
        log.info("webhook for %s to %s failed: %s", payload["request_id"], url, type(exc).__name__)
        return False
