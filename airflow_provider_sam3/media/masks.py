"""Mask PNGs from fal to boolean arrays, and the statistics callers want from a mask."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media._sources import load_image
from airflow_provider_sam3.media.boxes import mask_box

__all__ = ["MaskStats", "mask_from_image", "mask_stats"]

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _ALPHA_MODES or "transparency" in image.info


def mask_from_image(
    source: bytes | str | os.PathLike[str] | Image.Image | Any,
    *,
    threshold: int = 127,
    field: str = "mask",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Boolean ``(height, width)`` mask from a white-on-black mask image.

    Where the image has a non-opaque alpha channel, alpha > threshold marks the mask; otherwise luminance does.
    Decoded through ``guards.images`` (the provider's pixel cap); with ``size`` (the image's ``(width, height)``), a
    mask of any other size is refused before it is decoded.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or not 0 <= threshold < 255:
        raise InputValidationError("threshold", f"must be a number from 0 to 254, got {threshold!r}.")
    image = load_image(source, field=field, expected_size=size)
    if _has_alpha(image):
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
        if alpha.min() < 255:
            return alpha > threshold
    return np.asarray(image.convert("L")) > threshold


@dataclass(frozen=True)
class MaskStats:
    """Area in pixels, tight box (exclusive maxima) and centroid, both in continuous pixel coordinates.

    The centroid of pixel (col, row) is (col + 0.5, row + 0.5), so a filled rectangle's centroid is its box centre.
    """

    area: int
    box: tuple[int, int, int, int] | None
    centroid: tuple[float, float] | None


def mask_stats(mask: np.ndarray, *, field: str = "mask") -> MaskStats:
    """Area, box and centroid of a 2-D mask; box and centroid are ``None`` for an empty mask."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputValidationError(field, f"must be a 2-D (height, width) array, got shape {array.shape}.")
    array = array.astype(bool, copy=False)
    area = int(np.count_nonzero(array))
    if area == 0:
        return MaskStats(area=0, box=None, centroid=None)
    x = float(np.dot(array.sum(axis=0), np.arange(array.shape[1]))) / area + 0.5
    y = float(np.dot(array.sum(axis=1), np.arange(array.shape[0]))) / area + 0.5
    return MaskStats(area=area, box=mask_box(array), centroid=(x, y))
