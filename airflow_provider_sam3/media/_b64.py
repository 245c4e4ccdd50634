"""Strict base64: the standard alphabet, canonical '=' padding, no whitespace."""

from __future__ import annotations

import base64
import binascii

STRICT_BASE64 = "standard base64 alphabet with '=' padding, no whitespace"


def strict_b64decode(text: str | bytes) -> bytes:
    """Decode ``text``, raising ``ValueError`` unless it is exactly what ``base64.b64encode`` would write."""
    raw = text.encode("ascii") if isinstance(text, str) else bytes(text)
    data = base64.b64decode(raw, validate=True)
    if base64.b64encode(data) != raw:
        raise binascii.Error("padding or trailing bits are not canonical")
    return data
