"""The ``image`` and ``image-rle`` apps: the classical segmenter on a photo of any size, cheaply.

A photo is decoded at a reduced size (JPEG's DCT scaling: a 12 MP photo decodes as about 0.2 MP), segmented on a
copy of at most ``segmenter.WORK_SIZE`` pixels, and its masks are returned at the photo's full size (fast PNGs, or
RLE). The preview (``image``) is drawn on the reduced copy: at most ``PREVIEW_MAX_SIDE`` pixels on its longest side
(fal's model page states its preview resolution as 1024x1024), at least half of that for a large JPEG (the DCT
scale that decodes fastest); smaller photos keep their size.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
from PIL import Image

from airflow_provider_sam3.media.render import overlay
from airflow_provider_sam3.media.rle import rle_encode
from airflow_provider_sam3.testing.emulator.app_files import AppContext, PendingFile, normalized_box, publish
from airflow_provider_sam3.testing.emulator.fetch import decode_image_reduced, fetch_bytes
from airflow_provider_sam3.testing.emulator.results import NO_MASKS, AppError
from airflow_provider_sam3.testing.emulator.segmenter import BoxSpec, PointSpec, segment

__all__ = ["IMAGE_FORMATS", "PNG_COMPRESSION", "PREVIEW_MAX_SIDE", "encode", "segment_image", "segment_image_sync"]

PREVIEW_MAX_SIDE = 1024
IMAGE_FORMATS = {
    "png": ("PNG", "image/png", "png"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}
PNG_COMPRESSION = 1
"""zlib level of the PNGs written here: several times faster than the default 6; masks, being two-valued, come out
nearly as small."""


def encode(image: Image.Image, fmt: str, *, lossless: bool = False) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=PNG_COMPRESSION)
    else:
        options = {"lossless": True} if lossless and fmt == "webp" else {}
        image.save(buffer, format=IMAGE_FORMATS[fmt][0], quality=90, **options)
    return buffer.getvalue()


def _mask_file(mask: np.ndarray, fmt: str, name: str) -> PendingFile:
    _, mime, extension = IMAGE_FORMATS[fmt]
    height, width = mask.shape
    pixels = np.ascontiguousarray(mask).view(np.uint8) * np.uint8(255)  # mode L, 255 inside: how fal writes masks
    picture = Image.frombuffer("L", (width, height), pixels, "raw", "L", 0, 1)
    data = encode(picture, fmt, lossless=True)
    return PendingFile(data, f"{name}.{extension}", mime, mask.shape[1], mask.shape[0])


def _prompts(inputs: Any) -> dict[str, Any]:
    return {
        "points": [PointSpec(p.x, p.y, int(p.label), p.object_id) for p in inputs.point_prompts],
        "boxes": [BoxSpec(b.x_min, b.y_min, b.x_max, b.y_max, b.object_id) for b in inputs.box_prompts],
    }


def _shrunk(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` (full size) at ``size`` = (width, height), nearest neighbour."""
    height, width = mask.shape
    rows = np.minimum(np.arange(size[1]) * height // size[1], height - 1)
    cols = np.minimum(np.arange(size[0]) * width // size[0], width - 1)
    return mask[rows][:, cols]


def segment_image_sync(image: Image.Image, size: tuple[int, int], inputs: Any, rle: bool) -> dict[str, Any]:
    """The app's output body for ``image`` (the reduced copy) of a photo of ``size`` = (width, height)."""
    limit = inputs.max_masks if inputs.return_multiple_masks else 1
    segments = segment(image, prompt=inputs.prompt, max_masks=limit, size=size, **_prompts(inputs))
    masks = [s.mask for s in segments]
    if rle:
        if not masks:
            raise AppError(NO_MASKS)
        strings = [rle_encode(m) for m in masks]
        body: dict[str, Any] = {"rle": strings[0] if len(strings) == 1 else strings}
    else:
        fmt = inputs.output_format
        body = {"masks": [_mask_file(m, fmt, f"mask_{i}") for i, m in enumerate(masks)]}
        if inputs.apply_mask:
            _, mime, extension = IMAGE_FORMATS[fmt]
            preview = overlay(image, [_shrunk(m, image.size) for m in masks]) if masks else image
            body["image"] = PendingFile(encode(preview, fmt), f"preview.{extension}", mime, *preview.size)
    boxes = [normalized_box(m) for m in masks] if inputs.include_boxes else []
    scores = [s.score for s in segments]
    body["metadata"] = []
    for index in range(len(masks)):
        entry: dict[str, Any] = {"index": index}
        if inputs.include_scores:
            entry["score"] = scores[index]
        if inputs.include_boxes:
            entry["box"] = boxes[index]
        body["metadata"].append(entry)
    if inputs.include_scores:
        body["scores"] = scores
    if inputs.include_boxes:
        body["boxes"] = boxes
    return body


def _decode_and_segment(data: bytes, inputs: Any, rle: bool) -> dict[str, Any]:
    image, size = decode_image_reduced(data, "image_url", PREVIEW_MAX_SIDE)
    return segment_image_sync(image, size, inputs, rle)


async def segment_image(inputs: Any, ctx: AppContext, *, rle: bool = False) -> Any:
    data = await fetch_bytes(inputs.image_url, "image_url", ctx)
    body = await asyncio.to_thread(_decode_and_segment, data, inputs, rle)
    return publish(body, ctx, inline=inputs.sync_mode)
