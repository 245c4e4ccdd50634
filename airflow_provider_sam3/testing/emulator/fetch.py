"""Read the files a request names, as fal's runner would: data URIs, the emulator's own files, loopback URLs.

The emulator is offline: any other URL fails with the 422 fal gives for a file it could not download.
"""

from __future__ import annotations

import io
import ssl
from typing import Protocol
from urllib.parse import urlsplit

from PIL import Image, ImageOps

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.media.inputs import parse_data_uri
from airflow_provider_sam3.testing.emulator.media_store import MediaStore
from airflow_provider_sam3.testing.emulator.results import unprocessable

__all__ = [
    "DOWNLOAD_TIMEOUT_S",
    "FetchContext",
    "LOOPBACK_HOSTS",
    "ORIENTATION_TAG",
    "decode_image",
    "decode_image_reduced",
    "fetch_bytes",
]

ORIENTATION_TAG = 0x0112
"""EXIF orientation: 5 to 8 turn the picture a quarter, swapping width and height."""
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DOWNLOAD_TIMEOUT_S = 10.0


class FetchContext(Protocol):
    media: MediaStore
    cert_file: str


def _download_error(field: str, reason: str) -> Exception:
    message = f"could not download {field} ({reason}); check that the URL is reachable"
    return unprocessable(field, message, "file_download_error")


async def fetch_bytes(url: str, field: str, ctx: FetchContext) -> bytes:
    """The bytes ``url`` points at, or a 422 naming ``field``."""
    if url[:5].lower() == "data:":
        try:
            return parse_data_uri(url, field=field)[1]
        except InputValidationError as exc:
            raise _download_error(field, str(exc)) from None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK_HOSTS:
        raise _download_error(field, "the emulator is offline and only reaches data: URIs and loopback URLs")
    stored = ctx.media.resolve(url)
    if stored is not None:
        return stored.data
    import httpx

    context = ssl.create_default_context()
    context.load_verify_locations(ctx.cert_file)
    try:
        async with httpx.AsyncClient(verify=context, timeout=DOWNLOAD_TIMEOUT_S, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise _download_error(field, f"{type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise _download_error(field, f"HTTP {response.status_code}")
    return response.content


def decode_image(data: bytes, field: str) -> Image.Image:
    """An upright RGB image from ``data``, or a 422 naming ``field``."""
    return decode_image_reduced(data, field, None)[0]


def decode_image_reduced(data: bytes, field: str, max_side: int | None) -> tuple[Image.Image, tuple[int, int]]:
    """An upright RGB copy of the image in ``data``, at most ``max_side`` pixels on its longest side (``None``: the
    whole image), and the upright full size ``(width, height)``; or a 422 naming ``field``. A JPEG is decoded at a
    reduced scale (DCT scaling, to between half of ``max_side`` and ``max_side``), so a 12 MP photo costs a small
    fraction of a full decode; other formats are decoded whole, then reduced."""
    try:
        opened = Image.open(io.BytesIO(data))
        width, height = opened.size
        turned = opened.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)
        factor = max_side / max(width, height) / 2 if max_side else 1.0
        if factor < 1 and opened.format == "JPEG":  # the smallest DCT scale giving at least half of max_side
            opened.draft("RGB", (max(1, int(width * factor)), max(1, int(height * factor))))
        opened.load()
        image: Image.Image = opened
        image = ImageOps.exif_transpose(image).convert("RGB")
        if max_side and max(image.size) > max_side:
            scale = max_side / max(image.size)
            target = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(target, Image.Resampling.BOX)
        return image, ((height, width) if turned else (width, height))
    except Exception as exc:
        message = f"could not decode {field} as an image ({type(exc).__name__})"
        raise unprocessable(field, message, "image_load_error") from None
