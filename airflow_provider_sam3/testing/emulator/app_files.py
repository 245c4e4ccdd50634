"""What every emulator app shares: the context it runs in, the files it produces and how they are published
(stored under ``/media`` with a URL, or inlined as data URIs for ``sync_mode``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from airflow_provider_sam3.media.boxes import mask_box, xyxy_to_cxcywh
from airflow_provider_sam3.media.inputs import to_data_uri
from airflow_provider_sam3.testing.emulator.fetch import decode_image, fetch_bytes
from airflow_provider_sam3.testing.emulator.media_store import MediaStore

__all__ = [
    "AppContext",
    "LIFECYCLE_HEADER",
    "PendingFile",
    "RequestContext",
    "load_image",
    "normalized_box",
    "publish",
    "requested_media_lifetime",
]


class AppContext(Protocol):
    media: MediaStore
    cert_file: str

    @property
    def media_ttl_s(self) -> float: ...


@dataclass
class RequestContext:
    """An ``AppContext`` for one request that asked for a shorter media lifetime than the emulator's."""

    media: MediaStore
    cert_file: str
    media_ttl_s: float


LIFECYCLE_HEADER = "x-fal-object-lifecycle-preference"


def requested_media_lifetime(headers: Mapping[str, str]) -> float | None:
    """Seconds the submit's ``X-Fal-Object-Lifecycle-Preference`` asks fal to keep the output media, else None
    (a header that does not read as ``{"expiration_duration_seconds": N > 0}`` is ignored, as fal ignores it)."""
    try:
        seconds = json.loads(headers.get(LIFECYCLE_HEADER, "null") or "null")["expiration_duration_seconds"]
    except (ValueError, TypeError, KeyError):
        return None
    return (
        float(seconds) if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0 else None
    )


@dataclass(frozen=True)
class PendingFile:
    """A file an app produced, stored (or inlined for ``sync_mode``) once the app returns."""

    data: bytes
    file_name: str
    content_type: str
    width: int | None = None
    height: int | None = None


def publish(value: Any, ctx: AppContext, *, inline: bool = False) -> Any:
    """``value`` with every ``PendingFile`` replaced by fal's File/Image object (media URL or data URI)."""
    if isinstance(value, PendingFile):
        if inline:
            url = to_data_uri(value.data, value.content_type)
        else:
            url = ctx.media.put(value.data, value.file_name, value.content_type, ttl_s=ctx.media_ttl_s)
        out: dict[str, Any] = {
            "url": url,
            "content_type": value.content_type,
            "file_name": value.file_name,
            "file_size": len(value.data),
        }
        if value.width is not None:
            out.update(width=value.width, height=value.height)
        return out
    if isinstance(value, dict):
        return {k: publish(v, ctx, inline=inline) for k, v in value.items()}
    if isinstance(value, list):
        return [publish(v, ctx, inline=inline) for v in value]
    return value


def normalized_box(mask: np.ndarray) -> list[float] | None:
    box = xyxy_to_cxcywh(mask_box(mask), mask.shape[1], mask.shape[0])
    return None if box is None else [round(v, 6) for v in box]


async def load_image(url: str, field: str, ctx: AppContext) -> Image.Image:
    """The whole upright image ``url`` names, or a 422 naming ``field``."""
    data = await fetch_bytes(url, field, ctx)
    return await asyncio.to_thread(decode_image, data, field)
