"""The result cache's key: a hash of what fal is asked to compute, never of how or when it is sent.

The key covers the cache format, the endpoint and its SAM version, every request field with fal's defaults filled in
from the endpoint's model (so ``{"prompt": "cat"}`` and ``{"prompt": "cat", "max_masks": <fal's default>}`` are one
key), each input file by the hash of its bytes (a local path, an object-storage path, bytes or a data URI holding
the same photo are one key), and an optional salt the user sets to start afresh. Queue options (priority, hint,
webhook, start timeout, store-io, media lifetime) are not request fields, so they are not in it. An input given as
an http(s) URL names bytes that may change: it is keyed by the URL only when the user says so (``key_urls``);
otherwise the request is not cached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint

__all__ = ["CACHE_FORMAT", "content_digest", "file_fields", "request_key"]

CACHE_FORMAT = 1
"""Bumped when what a key covers or what an entry holds changes: older entries then miss instead of misleading."""
_DIGEST_PREFIX = "sha256:"


def content_digest(data: bytes) -> str:
    """The digest an input file is keyed by: ``sha256:<hex>`` of its bytes."""
    return _DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def file_fields(endpoint: Endpoint) -> tuple[str, ...]:
    """The endpoint's input fields that name a file (``image_url``, ``video_url``, ``mask_url``, ...)."""
    return tuple(name for name in endpoint.input_fields if name.endswith("_url"))


def request_key(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    *,
    digests: Mapping[str, str] | None = None,
    key_urls: bool = False,
    salt: str | None = None,
) -> str | None:
    """The cache key of ``body`` sent to ``endpoint`` (64 hex characters), or ``None`` when the request is not
    cacheable (an http(s) input without ``key_urls``).

    ``digests`` maps a file field to the ``content_digest`` of the bytes the caller read for it (the body then
    holds a data URI or a fal storage URL for them); a data URI without one is keyed by its decoded bytes.
    Raises ``InputValidationError`` for a body the endpoint's model refuses, or a malformed digest or salt."""
    if salt is not None and (not isinstance(salt, str) or len(salt) > 1000):
        raise InputValidationError("cache_salt", f"{salt!r} must be a string of at most 1,000 characters")
    request = endpoint.validate_input(body).model_dump(mode="json")
    for name in file_fields(endpoint):
        value = request.get(name)
        if value is None:
            continue
        keyed = _file_key(name, value, (digests or {}).get(name), key_urls)
        if keyed is None:
            return None
        request[name] = keyed
    canonical = {
        "format": CACHE_FORMAT,
        "endpoint": endpoint.endpoint_id,
        "version": endpoint.version,
        "request": request,
        "salt": salt,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _file_key(name: str, value: str, digest: str | None, key_urls: bool) -> str | None:
    """What one file field contributes to the key: its bytes' digest, or its URL when URLs are keyed."""
    if digest is not None:
        hexdigest = digest.removeprefix(_DIGEST_PREFIX)
        if not digest.startswith(_DIGEST_PREFIX) or len(hexdigest) != 64 or not _is_hex(hexdigest):
            raise InputValidationError(name, f"its content digest {digest!r} is not sha256:<64 hex characters>")
        return digest
    if value[:5].lower() == "data:":
        return content_digest(_data_uri_bytes(name, value))
    return f"url:{value}" if key_urls else None


def _data_uri_bytes(name: str, uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    if not header.lower().endswith(";base64"):
        from urllib.parse import unquote_to_bytes

        return unquote_to_bytes(payload)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InputValidationError(name, f"is a data URI whose base64 payload does not decode ({error})") from None


def _is_hex(text: str) -> bool:
    return all(char in "0123456789abcdef" for char in text)
