"""Pictures made from masks: overlays (tinted, outlined, labelled with label and score), transparent cutouts, a
contact sheet of many pictures, and PNG encoding."""

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

__all__ = ["ImageSource", "PALETTE", "contact_sheet", "cutout", "encode_png", "mask_to_png", "overlay"]

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
    labels: Sequence[str | None] | None = None,
    scores: Sequence[float | None] | None = None,
) -> Image.Image:
    """RGB copy of ``image`` with each mask tinted in its own colour, outlined in it when ``outline`` (thicker on
    larger pictures), and, given ``labels`` or ``scores``, a tag in that colour at the mask's top left
    ("cup 0.93")."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0 <= alpha <= 1:
        raise InputValidationError("alpha", f"must be a number from 0 to 1, got {alpha!r}.")
    base = _photo(image).convert("RGB")
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    arrays = [_mask(m, base.size, f"masks[{i}]") for i, m in enumerate(masks)]
    tags = _tags(len(arrays), labels, scores)
    palette = _colors(colors)
    pixels = np.asarray(base, dtype=np.float32).copy()
    width = max(1, round(min(base.size) / 300))
    for i, mask in enumerate(arrays):
        color = np.asarray(palette[i % len(palette)], dtype=np.float32)
        pixels[mask] = pixels[mask] * (1 - alpha) + color * alpha
        if outline:
            pixels[_thick(_edge(mask), width)] = color
    picture = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
    if any(tags):
        _draw_tags(picture, arrays, tags, palette)
    return picture


def _tags(count: int, labels: Sequence[str | None] | None, scores: Sequence[float | None] | None) -> list[str]:
    """One tag text per mask ("label 0.93", "label", "0.93" or ""), checked against the number of masks."""
    for name, values in (("labels", labels), ("scores", scores)):
        if values is not None and len(values) != count:
            raise InputValidationError(name, f"has {len(values)} items for {count} masks; give one per mask.")
    tags = []
    for i in range(count):
        label = labels[i] if labels is not None else None
        score = scores[i] if scores is not None else None
        parts = [str(label)[:40]] if label else []
        if isinstance(score, (int, float)) and not isinstance(score, bool) and np.isfinite(score):
            parts.append(f"{score:.2f}")
        tags.append(" ".join(parts))
    return tags


def _thick(edge: np.ndarray, width: int) -> np.ndarray:
    """``edge`` grown by ``width - 1`` pixels in each direction (a square dilation by shifts)."""
    grown = edge.copy()
    for _ in range(width - 1):
        padded = np.pad(grown, 1)
        grown = grown | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return grown


def _draw_tags(
    picture: Image.Image, masks: list[np.ndarray], tags: list[str], palette: list[tuple[int, int, int]]
) -> None:
    from PIL import ImageDraw, ImageFont

    size = max(10, round(min(picture.size) / 28))
    try:
        font: Any = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one small bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(picture)
    for i, (mask, tag) in enumerate(zip(masks, tags)):
        box = mask_box(mask)
        if not tag or box is None:
            continue
        color = palette[i % len(palette)]
        left, top, right, bottom = draw.textbbox((0, 0), tag, font=font)
        pad = max(2, size // 5)
        x = min(max(0, box[0]), max(0, picture.width - (right - left) - 2 * pad))
        y = box[1] - (bottom - top) - 2 * pad
        y = y if y >= 0 else min(box[1], max(0, picture.height - (bottom - top) - 2 * pad))
        draw.rectangle((x, y, x + right - left + 2 * pad, y + bottom - top + 2 * pad), fill=color)
        text_color = (0, 0, 0) if sum(color) > 500 else (255, 255, 255)
        draw.text((x + pad - left, y + pad - top), tag, fill=text_color, font=font)


def contact_sheet(
    pictures: Sequence[ImageSource], *, columns: int = 4, thumb: int = 320, captions: Sequence[str] | None = None
) -> Image.Image:
    """One RGB picture of many, ``columns`` across, each scaled to fit a ``thumb`` x ``thumb`` cell (with its
    caption under it when given): a whole run at a glance."""
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise InputValidationError("columns", f"must be a whole number of at least 1, got {columns!r}.")
    if isinstance(thumb, bool) or not isinstance(thumb, int) or not 16 <= thumb <= 2048:
        raise InputValidationError("thumb", f"must be a whole number of pixels from 16 to 2048, got {thumb!r}.")
    if not pictures:
        raise InputValidationError("pictures", "is empty; give at least one picture.")
    if captions is not None and len(captions) != len(pictures):
        raise InputValidationError("captions", f"has {len(captions)} items for {len(pictures)} pictures.")
    from PIL import ImageDraw, ImageFont

    caption_height = thumb // 10 if captions is not None else 0
    try:
        font: Any = ImageFont.load_default(size=max(10, caption_height - 6))
    except TypeError:
        font = ImageFont.load_default()
    gap = max(4, thumb // 40)
    rows = -(-len(pictures) // columns)
    cell_w, cell_h = thumb + gap, thumb + caption_height + gap
    sheet = Image.new("RGB", (columns * cell_w + gap, rows * cell_h + gap), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    for i, source in enumerate(pictures):
        picture = _photo(source).convert("RGB")
        picture.thumbnail((thumb, thumb))
        x = gap + (i % columns) * cell_w + (thumb - picture.width) // 2
        y = gap + (i // columns) * cell_h + (thumb - picture.height) // 2
        sheet.paste(picture, (x, y))
        if captions is not None:
            text = str(captions[i])[:60]
            draw.text(
                (gap + (i % columns) * cell_w, gap + (i // columns) * cell_h + thumb + 2),
                text,
                fill=(20, 20, 20),
                font=font,
            )
    return sheet


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
