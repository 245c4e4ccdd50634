"""Numbers from fal, checked before they reach a document: scores and boxes.

NaN is not valid JSON for strict parsers (nor for a Postgres JSON column), and a box of ``[-5, -5, 1e6, 1e6]``
becomes a pixel box of 48 million. A paid result is never failed over one odd number: what cannot be used is stored
as null and what reaches outside the image is clamped to it, each with a note in the document saying what was
changed and why (``notes``). Numbers a user gives are checked in ``models.checked_numbers``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["finite_score", "finite_tree", "unit_box"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def finite_score(value: Any, field: str, notes: list[str]) -> float | None:
    """A score as a finite float, or None (noted) when fal sent NaN, an infinity, a boolean or no number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        notes.append(f"{field}: fal sent {_shown(value)}, not a finite number; stored as null")
        return None
    return float(value)


def unit_box(box: Sequence[Any] | None, field: str, notes: list[str]) -> list[float] | None:
    """fal's normalized ``[cx, cy, w, h]`` clamped to the image (``[0, 1]`` on both axes), or None (noted) when it
    is not four finite numbers with ``w, h >= 0``. A clamped box is noted with what fal sent."""
    if box is None:
        return None
    values = list(box) if isinstance(box, (list, tuple)) else None
    if (
        values is None
        or len(values) != 4
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values)
        or values[2] < 0
        or values[3] < 0
    ):
        notes.append(f"{field}: fal sent {_shown(box)}, not four finite numbers [cx, cy, w, h]; stored as null")
        return None
    cx, cy, w, h = (float(v) for v in values)
    x0, y0 = min(max(cx - w / 2, 0.0), 1.0), min(max(cy - h / 2, 0.0), 1.0)
    x1, y1 = min(max(cx + w / 2, 0.0), 1.0), min(max(cy + h / 2, 0.0), 1.0)
    clamped = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    if any(abs(a - b) > 1e-9 for a, b in zip(clamped, (cx, cy, w, h))):
        notes.append(f"{field}: fal's box {_shown(box)} reaches outside the image; clamped to it")
        return clamped
    return [cx, cy, w, h]


def finite_tree(value: Any, field: str, notes: list[str]) -> Any:
    """A JSON tree from fal (3D metadata, per-frame scores) with every NaN or infinity replaced by null, noting how
    many were replaced (a strict JSON parser or a Postgres JSON column refuses them)."""
    replaced: list[str] = []

    def walk(item: Any, path: str) -> Any:
        if isinstance(item, float) and not math.isfinite(item):
            replaced.append(path)
            return None
        if isinstance(item, dict):
            return {key: walk(child, f"{path}.{key}") for key, child in item.items()}
        if isinstance(item, list):
            return [walk(child, f"{path}[{i}]") for i, child in enumerate(item)]
        return item

    cleaned = walk(value, field)
    if replaced:
        shown = ", ".join(replaced[:3]) + (f" and {len(replaced) - 3} more" if len(replaced) > 3 else "")
        notes.append(f"{shown}: fal sent NaN or an infinity, not a finite number; stored as null")
    return cleaned
