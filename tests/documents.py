"""Comparing result documents in tests: two runs of the same request differ only in ids, times and URLs."""

from __future__ import annotations

from typing import Any

VOLATILE = frozenset({"request_id", "timings", "url", "stored_url", "output_location", "data_stored_url"})
"""Fields that differ between two runs of the same request."""


def stable(value: Any, also: frozenset[str] = frozenset()) -> Any:
    """The document without ``VOLATILE`` fields (and ``also``), at any depth."""
    if isinstance(value, dict):
        return {k: stable(v, also) for k, v in value.items() if k not in VOLATILE and k not in also}
    if isinstance(value, list):
        return [stable(v, also) for v in value]
    return value
