"""Pictures made from masks: tinted overlays, transparent cutouts and PNG encoding."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media._sources import load_image, upright
from airflow_provider_sam3.media.boxes import mask_box

PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
"""Mask colours in order; mask ``i`` gets ``PALETTE[i % len(PALETTE)]``."""

ImageSource = Image.Image | bytes | str | os.PathLike[str] | Any


def _mask(mask: Any, size: tuple[int, int], field: str) -> np.ndarray:
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputValidationError(field, f"must be a 2-D (height, width) array, got shape {array.shape}.")
    if array.shape != (size[1], size[0]):
        raise InputValidationError(
            field,
            f"is {array.shape[1]}x{array.shape[0]} (width x height) but the image is {size[0]}x{size[1]}; "
            "masks must be the size of the image.",
        )
    return array.astype(bool, copy=False)


def _colors(colors: Sequence[Sequence[int]] | None) -> list[tuple[int, int, int]]:
    if colors is None:
        return list(PALETTE)
    out = []
    for i, color in enumerate(colors):
        values = np.asarray(color) if not isinstance(color, (str, bytes)) else np.asarray(None)
        if values.shape != (3,) or values.dtype.kind not in "iu" or values.min() < 0 or values.max() > 255:
            raise InputValidationError(f"colors[{i}]", f"must be an (r, g, b) tuple of integers 0-255, got {color!r}.")
        out.append((int(values[0]), int(values[1]), int(values[2])))
    if not out:
        raise InputValidationError("colors", "is empty; give at least one (r, g, b) colour or leave it None.")
    return out


def _photo(image: ImageSource) -> Image.Image:
    """The source photo upright, as ``prepare_image`` sent it to fal, so fal's masks line up with it."""
    loaded = load_image(image, field="image")
    return upright(loaded) or loaded


def _edge(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay(
    image: ImageSource,
    masks: Sequence[np.ndarray] | np.ndarray,
    *,
    alpha: float = 0.5,
    colors: Sequence[Sequence[int]] | None = None,
    outline: bool = True,
) -> Image.Image:
    """RGB copy of ``image`` with each mask tinted in its own colour (and outlined in it when ``outline``)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= alpha <= 1:
        raise InputValidationError("alpha", f"must be a number from 0 to 1, got {alpha!r}.")
    base = _photo(image).convert("RGB")
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    arrays = [_mask(m, base.size, f"masks[{i}]") for i, m in enumerate(masks)]
    palette = _colors(colors)
    pixels = np.asarray(base, dtype=np.float32).copy()
    for i, mask in enumerate(arrays):
        color = np.asarray(palette[i % len(palette)], dtype=np.float32)
        pixels[mask] = pixels[mask] * (1 - alpha) + color * alpha
        if outline:
            pixels[_edge(mask)] = color
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def cutout(image: ImageSource, mask: np.ndarray, *, crop: bool = True) -> Image.Image:
    """RGBA copy of ``image`` whose alpha is the mask (255 inside, 0 outside), cropped to the mask box if ``crop``."""
    rgba = _photo(image).convert("RGBA")
    array = _mask(mask, rgba.size, "mask")
    rgba.putalpha(Image.fromarray(array.astype(np.uint8) * 255, "L"))
    box = mask_box(array) if crop else None
    return rgba.crop(box) if box is not None else rgba


def encode_png(img: Image.Image) -> bytes:
    """PNG bytes of a PIL image."""
    if not isinstance(img, Image.Image):
        raise InputValidationError("img", f"must be a PIL image, got {type(img).__name__}.")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def mask_to_png(mask: np.ndarray) -> bytes:
    """Mode ``L`` PNG of a 2-D mask: 255 inside, 0 outside, the way fal writes mask images."""
    array = np.asarray(mask)
    if array.ndim != 2:
        raise InputValidationError("mask", f"must be a 2-D (height, width) array, got shape {array.shape}.")
    return encode_png(Image.fromarray(array.astype(bool).astype(np.uint8) * 255, "L"))
