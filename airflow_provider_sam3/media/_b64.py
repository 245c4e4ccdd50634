"""Base64 decoding: strict for what users send to fal, tolerant for what fal sends back (it is already paid for)."""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["STRICT_BASE64", "TOLERANT_BASE64", "strict_b64decode", "tolerant_b64decode"]

STRICT_BASE64 = "standard base64 alphabet with '=' padding, no whitespace"


def strict_b64decode(text: str | bytes) -> bytes:
    """Decode ``text``, raising ``ValueError`` unless it is exactly what ``base64.b64encode`` would write."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    data = base64.b64decode(raw, validate=True)
    if base64.b64encode(data) != raw:
        raise binascii.Error("padding or trailing bits are not canonical")
    return data


TOLERANT_BASE64 = "base64 (standard or URL-safe alphabet; padding and whitespace optional)"
_WHITESPACE = re.compile(r"\s+")


def tolerant_b64decode(text: str | bytes) -> bytes:
    """Decode base64 as servers write it: line breaks, missing padding and the URL-safe alphabet are accepted;
    any other character, or a length no base64 text can have, raises ``ValueError``."""
    raw = text.decode("ascii") if isinstance(text, bytes) else text
    raw = _WHITESPACE.sub("", raw).rstrip("=")
    if len(raw) % 4 == 1:
        raise binascii.Error(f"{len(raw)} characters cannot be base64")
    raw = raw.replace("-", "+").replace("_", "/")
    return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
