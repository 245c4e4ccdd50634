"""Box conversions between fal's normalized ``[cx, cy, w, h]`` and pixel ``[x_min, y_min, x_max, y_max]``.

Pixel boxes use continuous pixel coordinates with exclusive maxima: a mask covering columns 10..19 has
``x_min=10, x_max=20`` and a normalized width of ``10 / width``. Conversions do not clip to the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from airflow_provider_sam3.exceptions import InputValidationError

__all__ = ["cxcywh_to_xyxy", "mask_box", "xyxy_to_cxcywh"]


def _size(width: float, height: float) -> tuple[float, float]:
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
            raise InputValidationError(name, f"must be a positive number of pixels, got {value!r}.")
        if not math.isfinite(value):
            raise InputValidationError(name, f"must be a finite number of pixels, got {value!r}.")
    return float(width), float(height)


def _four(box: Sequence[float], field: str, layout: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise InputValidationError(field, f"must be 4 numbers {layout}, got {box!r}.") from None
    if len(values) != 4:
        raise InputValidationError(field, f"must be 4 numbers {layout}, got {len(values)}.")
    if not all(math.isfinite(v) for v in values):
        raise InputValidationError(field, f"must hold finite numbers, got {box!r}.")
    return values


def cxcywh_to_xyxy(
    box: Sequence[float] | None, width: float, height: float, *, field: str = "box"
) -> tuple[float, float, float, float] | None:
    """Normalized ``[cx, cy, w, h]`` to pixel ``(x_min, y_min, x_max, y_max)``; ``None`` stays ``None``."""
    if box is None:
        return None
    w_img, h_img = _size(width, height)
    cx, cy, w, h = _four(box, field, "[cx, cy, w, h]")
    if w < 0 or h < 0:
        raise InputValidationError(field, f"has a negative width or height ({w}, {h}); sizes must be >= 0.")
    return ((cx - w / 2) * w_img, (cy - h / 2) * h_img, (cx + w / 2) * w_img, (cy + h / 2) * h_img)


def xyxy_to_cxcywh(
    box: Sequence[float] | None, width: float, height: float, *, field: str = "box"
) -> tuple[float, float, float, float] | None:
    """Pixel ``[x_min, y_min, x_max, y_max]`` to normalized ``(cx, cy, w, h)``; ``None`` stays ``None``."""
    if box is None:
        return None
    w_img, h_img = _size(width, height)
    x0, y0, x1, y1 = _four(box, field, "[x_min, y_min, x_max, y_max]")
    if x1 < x0 or y1 < y0:
        raise InputValidationError(field, f"has x_max < x_min or y_max < y_min ({box!r}); give the corners in order.")
    return ((x0 + x1) / 2 / w_img, (y0 + y1) / 2 / h_img, (x1 - x0) / w_img, (y1 - y0) / h_img)


def mask_box(mask: np.ndarray, *, field: str = "mask") -> tuple[int, int, int, int] | None:
    """Tight pixel box ``(x_min, y_min, x_max, y_max)`` of a 2-D mask, maxima exclusive; ``None`` when empty."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputValidationError(field, f"must be a 2-D (height, width) array, got shape {array.shape}.")
    rows = np.flatnonzero(array.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(array.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
