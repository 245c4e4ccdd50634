"""Text from fal, cleaned before it reaches an exception, a log, XCom, a manifest or a metadata file.

A queue host (or a proxy in front of it) that echoes the ``Authorization`` header back, in a 422 ``detail``, a log
line or a result, would put the key where Airflow's log masking never looks: the batch's ``manifest.jsonl``, a
metadata file, an XCom. The hook runs everything it takes from fal's answers through its ``Scrubber``, which
replaces the key in every form (``id:secret``, the id, the secret, and their base64) with ``***`` and caps the
length of each text.
"""

from __future__ import annotations

import base64
import re
from typing import Any

__all__ = ["MASK", "MAX_TEXT_CHARS", "Scrubber", "key_forms"]

MASK = "***"
MAX_TEXT_CHARS = 4000
"""Longest text from fal kept in one message, log line or field (the rest is cut, saying how much)."""
_MIN_PART = 8
"""Parts of a key shorter than this are not scrubbed on their own: they would match ordinary text."""


def key_forms(key: str | None) -> list[str]:
    """Every form of ``key`` to scrub, longest first: the key, its id and secret (``id:secret``), and the base64
    (standard and URL-safe, with and without padding) of the key and of ``Key <key>``."""
    if not key:
        return []
    forms = {key}
    if ":" in key:
        forms.update(part for part in key.split(":", 1) if len(part) >= _MIN_PART)
    for raw in (key, f"Key {key}"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(raw.encode()).decode("ascii")
            forms.update((text, text.rstrip("=")))
    return sorted(forms, key=len, reverse=True)


class Scrubber:
    """Cleans text and JSON from fal of one key (see the module docstring): one compiled pattern, one pass."""

    def __init__(self, key: str | None) -> None:
        forms = key_forms(key)
        self.pattern = re.compile("|".join(re.escape(form) for form in forms)) if forms else None

    def text(self, value: Any) -> str:
        """``value`` as text, the key replaced in every form, at most ``MAX_TEXT_CHARS`` long."""
        text = self.clean(value if isinstance(value, str) else str(value))
        if len(text) > MAX_TEXT_CHARS:
            text = f"{text[:MAX_TEXT_CHARS]}... ({len(text) - MAX_TEXT_CHARS} more characters cut)"
        return text

    def clean(self, text: str) -> str:
        """``text`` with the key replaced in every form, nothing cut (for JSON bodies: a result's data URIs are
        long by nature; the key's forms hold no character JSON escapes, so the body stays valid JSON)."""
        return self.pattern.sub(MASK, text) if self.pattern is not None else text

    def leaks(self, value: Any) -> bool:
        """Whether ``value`` holds the key in any form (for values that must be refused, not changed: URLs)."""
        return (
            self.pattern is not None
            and self.pattern.search(value if isinstance(value, str) else str(value)) is not None
        )

    def tree(self, value: Any) -> Any:
        """A JSON tree with every string (keys of objects included) cleaned, nothing cut."""
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.clean(value)
        if isinstance(value, dict):
            return {self.clean(k) if isinstance(k, str) else k: self.tree(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(item) for item in value]
        return value

    def exception(self, error: BaseException) -> BaseException:
        """``error`` and the exceptions it was raised from, their messages cleaned in place (a traceback prints
        every exception of the chain: fal-client's own error carries fal's whole answer). Returns ``error``."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen and len(seen) < 32 and self.pattern is not None:
            seen.add(id(current))
            current.args = tuple(self._part(arg) for arg in current.args)
            for name in ("message", "detail"):
                if isinstance(getattr(current, name, None), (str, list, dict)):
                    try:
                        setattr(current, name, self._part(getattr(current, name)))
                    except AttributeError:  # a read-only property
                        pass
            current = current.__cause__ or current.__context__
        return error

    def _part(self, value: Any) -> Any:
        """An exception's argument cleaned: text cut and cleaned, a parsed JSON answer (fal-client keeps a 422's
        ``detail`` list as its message) cleaned throughout."""
        if isinstance(value, str):
            return self.text(value)
        return self.tree(value) if isinstance(value, (list, dict)) else value
