"""Templated collections, bounded before anything walks them: depth, number of items, size of a text to parse.

A template can render any structure: ``images`` rendered as ``[[[...]]]`` 3,000 deep makes Python's own parsers
and validators raise ``RecursionError``, a 10-million-item list makes every later step slow and large. Each
templated value is walked here first (iteratively: no recursion to exhaust) and refused as an input error naming
the field, before anything is sent.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from airflow_provider_sam3.exceptions import InputValidationError

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_RENDERED_CHARS", "check_structure", "parse_rendered"]

MAX_DEPTH = 32
"""Deepest nesting of lists and mappings in a templated value (a prompt's points are 3 deep)."""
MAX_ITEMS = 1_000_000
"""Most items (list elements and mapping entries, all levels together) in one templated value."""
MAX_RENDERED_CHARS = 256 * 1024 * 1024
"""Longest rendered text read back as a list."""
_SPECIAL = re.compile(r"[\"'\\\[\]{}()]")


def check_structure(value: Any, field: str, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
    """Refuse (``InputValidationError`` naming ``field``) a value nested deeper than ``max_depth`` or holding more
    than ``max_items`` items in all (a walk without recursion, and without building a path per item)."""
    level: list[Any] = [value]
    items = 0
    for depth in range(max_depth + 1):
        nested: list[Any] = []
        for current in level:
            if isinstance(current, dict):
                nested.extend(current.values())
            elif isinstance(current, (list, tuple)):
                nested.extend(current)
        if not nested:
            return
        if depth == max_depth:
            raise InputValidationError(
                field, f"is nested more than {max_depth} levels deep", allowed=f"at most {max_depth} levels"
            )
        items += len(nested)
        if items > max_items:
            raise InputValidationError(
                field, f"holds more than {max_items:,} items in all", allowed=f"at most {max_items:,} items"
            )
        level = nested


def parse_rendered(text: str, field: str) -> Any:
    """A list or mapping a template rendered as text, read back (JSON, else a Python literal) once its nesting was
    checked on the text itself, so no parser recurses past ``MAX_DEPTH``."""
    if len(text) > MAX_RENDERED_CHARS:
        raise InputValidationError(field, f"is {len(text):,} characters of text, more than {MAX_RENDERED_CHARS:,}")
    depth = 0
    quote: str | None = None
    escaped = False
    for match in _SPECIAL.finditer(text):  # only quotes, brackets and backslashes: a few per list item
        char = match.group()
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
            if depth > MAX_DEPTH:
                raise InputValidationError(
                    field, f"is nested more than {MAX_DEPTH} levels deep", allowed=f"at most {MAX_DEPTH} levels"
                )
        elif char in "]})":
            depth -= 1
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        check_structure(value, field)
        return value
    raise InputValidationError(field, f"looks like a list or mapping but cannot be read: {text[:80]!r}")
