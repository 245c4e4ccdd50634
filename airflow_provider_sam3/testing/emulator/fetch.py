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
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:
        message = f"could not decode {field} as an image ({type(exc).__name__})"
        raise unprocessable(field, message, "image_load_error") from None
