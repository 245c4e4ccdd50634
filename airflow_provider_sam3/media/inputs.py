"""Turn what a user gives as an image into what fal accepts in an image URL field.

http(s) URLs pass through untouched and are never fetched here. Everything else (data URIs, local paths, bytes,
PIL images, objects with ``read_bytes()``) is sniffed by content, checked, turned upright when its EXIF says so,
and sent as a ``data:`` URI. AVIF that this Pillow cannot decode is recognised by its ``ftyp`` brand and passed
through without dimensions.
"""

from __future__ import annotations

import base64
import io
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

from PIL import Image, UnidentifiedImageError, features

from airflow_provider_sam3.exceptions import InputValidationError, InvalidImageError
from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES
from airflow_provider_sam3.guards.images import (
    BROKEN_FILE_ADVICE,
    DEFAULT_MAX_PIXELS,
    check_pixels,
    load_pixels,
    open_image,
)
from airflow_provider_sam3.media._b64 import STRICT_BASE64, strict_b64decode
from airflow_provider_sam3.media._sources import read_path, read_source, short, upright

__all__ = [
    "ACCEPTED_IMAGE_FORMATS",
    "CheckedImage",
    "DEFAULT_MAX_PIXELS",
    "PreparedImage",
    "accepted_format",
    "check_image_bytes",
    "has_avif_brand",
    "looks_like",
    "parse_data_uri",
    "prepare_image",
    "to_data_uri",
]

ACCEPTED_IMAGE_FORMATS = ("jpg", "jpeg", "png", "webp", "gif", "avif")
"""Image formats fal accepts, as users name them."""


_ALLOWED = ", ".join(ACCEPTED_IMAGE_FORMATS)
_SOURCES = (
    "an http(s) URL, a data: URI, a local file path, bytes, a PIL image, "
    "or an object with read_bytes() such as airflow.sdk.ObjectStoragePath"
)
_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "AVIF": "avif"}
_MIMES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif", "avif": "image/avif"}
_KEEP_ON_REENCODE = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
_DATA_URI = "data:<media type>;base64,<payload>"


@dataclass(frozen=True)
class PreparedImage:
    """An image ready for a fal image URL field, with what is known about it for logs and result checks.

    ``upload`` holds ``(bytes, media type)`` of local content larger than the inline limit: the caller uploads it
    to fal's storage and sends that URL (``url`` is then empty)."""

    url: str
    width: int | None
    height: int | None
    format: str | None
    byte_size: int | None
    source: str
    upload: tuple[bytes, str] | None = None


def to_data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,<payload>`` for ``data``."""
    if not isinstance(mime, str) or not _MIME.match(mime):
        raise InputValidationError("mime", f"must be a media type such as 'image/png', got {mime!r}.")
    return f"data:{mime};base64,{base64.b64encode(bytes(data)).decode('ascii')}"


def parse_data_uri(uri: str, *, field: str = "image_url") -> tuple[str, bytes]:
    """The declared media type and decoded payload of a base64 ``data:`` URI (strict base64)."""
    if not isinstance(uri, str) or uri[:5].lower() != "data:":
        raise InvalidImageError(field, "is not a data: URI.", allowed=_DATA_URI)
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise InvalidImageError(field, "is a data: URI without a ',' before its payload.", allowed=_DATA_URI)
    params = header.split(";")
    if len(params) < 2 or params[-1].strip().lower() != "base64":
        raise InvalidImageError(field, "is a data: URI that is not base64-encoded.", allowed=_DATA_URI)
    mime = params[0].strip().lower() or "text/plain"
    try:
        data = strict_b64decode(payload)
    except ValueError as exc:
        raise InvalidImageError(
            field, f"is a data: URI whose payload is not valid base64 ({exc}).", allowed=STRICT_BASE64
        ) from None
    return mime, data


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return short(urlunsplit((parts.scheme, netloc, parts.path, "..." if parts.query else "", "")))


def _check_url(url: str, field: str) -> PreparedImage:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidImageError(field, f"{short(url)!r} is not a valid URL ({exc}).", allowed=_SOURCES) from None
    if not parts.hostname:
        raise InvalidImageError(field, f"{short(url)!r} has no host name.", allowed=_SOURCES)
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidImageError(field, "is a URL containing whitespace or control characters; percent-encode them.")
    return PreparedImage(url=url, width=None, height=None, format=None, byte_size=None, source=_redact_url(url))


_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)


def _image_signature(data: bytes) -> str | None:
    """The accepted format whose magic bytes ``data`` starts with, or is the start of (WebP: RIFF....WEBP)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if len(data) < 3:
        return None
    return next((name for magic, name in _SIGNATURES if data[: len(magic)] == magic[: len(data)]), None)


def looks_like(data: bytes) -> str:
    head = data[:512]
    if head[4:8] == b"ftyp":
        return f"an ISO media file of brand {head[8:12].decode('latin-1')!r} (HEIC, MP4 or similar)"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.lstrip()[:1] == b"<":
        return "HTML or XML text"
    if head.lstrip()[:1] in (b"{", b"["):
        return "JSON text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:
            return "unrecognised binary data"
    return "text"


def has_avif_brand(data: bytes) -> bool:
    if len(data) < 16 or data[4:8] != b"ftyp":
        return False
    size = int.from_bytes(data[:4], "big")
    box = data[8 : max(16, min(size, 256))]
    brands = [box[i : i + 4] for i in range(0, len(box) - 3, 4)]
    return bool({b"avif", b"avis"} & set(brands))


def _encode(image: Image.Image, fmt: str, icc: bytes | None) -> bytes:
    target = _KEEP_ON_REENCODE.get(fmt, "PNG")
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if target == "JPEG":
        image = image if image.mode in ("L", "RGB", "CMYK") else image.convert("RGB")
        options.update(quality=95)
    elif target == "WEBP":
        options.update(quality=95)
    elif image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=target, **options)
    return buffer.getvalue()


@dataclass(frozen=True)
class CheckedImage:
    """Image bytes as they will be sent (turned upright when their EXIF says so), with what was read of them."""

    data: bytes
    mime: str
    format: str | None
    width: int | None
    height: int | None


def check_image_bytes(data: bytes, description: str, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Decode ``data`` fully, refuse what fal would refuse (naming ``field``), and turn it upright if needed."""
    if not data:
        raise InvalidImageError(field, f"{description} is empty; it must contain an image.", allowed=_ALLOWED)
    try:
        image: Image.Image = open_image(data, field, max_pixels=max_pixels, description=description)
    except UnidentifiedImageError:
        if has_avif_brand(data):
            if not features.check("avif"):
                return CheckedImage(data, "image/avif", "avif", None, None)
            raise InvalidImageError(
                field, f"{description} is an AVIF file that is truncated or corrupt.", allowed=_ALLOWED
            ) from None
        signature = _image_signature(data)
        if signature is not None:  # an accepted format whose header is cut short: the file is broken, not foreign
            raise InvalidImageError(
                field, f"{description} is a {signature} file that is truncated or corrupt; {BROKEN_FILE_ADVICE}."
            )
        raise InvalidImageError(
            field,
            f"{description} is not an accepted image: its content looks like {looks_like(data)}.",
            allowed=_ALLOWED,
        ) from None
    fmt = accepted_format(image, description, field)
    load_pixels(image, field, description)
    turned = upright(image)
    if turned is not None:
        data = _encode(turned, fmt, image.info.get("icc_profile"))
        fmt = _FORMATS[_KEEP_ON_REENCODE.get(fmt, "PNG")]
        image = turned
    return CheckedImage(data, _MIMES[fmt], fmt, image.width, image.height)


def accepted_format(image: Image.Image, description: str, field: str) -> str:
    """The format name fal knows for an opened image, or an error naming ``field`` when fal does not accept it."""
    fmt = _FORMATS.get(image.format or "")
    if fmt is None:
        raise InvalidImageError(
            field,
            f"{description} is a {image.format} image, which fal does not accept; convert it to PNG or JPEG.",
            allowed=_ALLOWED,
        )
    return fmt


def _from_bytes(
    data: bytes, description: str, field: str, max_pixels: int, inline_limit: int | None = None
) -> PreparedImage:
    checked = check_image_bytes(data, description, field, max_pixels)
    del data
    size = len(checked.data)
    if inline_limit is not None and size > inline_limit:
        upload = (checked.data, checked.mime)
        return PreparedImage("", checked.width, checked.height, checked.format, size, description, upload)
    return PreparedImage(
        to_data_uri(checked.data, checked.mime), checked.width, checked.height, checked.format, size, description
    )


def _from_pil(image: Image.Image, field: str, max_pixels: int) -> PreparedImage:
    description = f"PIL image ({image.mode}, {image.width}x{image.height})"
    check_pixels(image.width, image.height, field, max_pixels=max_pixels)
    try:
        image.load()
        turned = upright(image)
        data = _encode(image if turned is None else turned, "png", image.info.get("icc_profile"))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(field, f"{description} is truncated or corrupt ({exc}).") from None
    return _from_bytes(data, description, field, max_pixels)


def _from_string(text: str, field: str, max_pixels: int, limits: tuple[int, int | None]) -> PreparedImage:
    if not text.strip():
        raise InvalidImageError(field, "is empty; give an image.", allowed=_SOURCES)
    scheme_match = _SCHEME.match(text)
    scheme = scheme_match.group(1).lower() if scheme_match else None
    if scheme in ("http", "https"):
        return _check_url(text, field)
    if scheme == "data":
        mime, data = parse_data_uri(text, field=field)
        return _from_bytes(data, f"data URI ({short(mime, 60)}, {len(data)} B)", field, max_pixels)
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise InvalidImageError(field, f"{short(text)!r} names a file on another host.", allowed=_SOURCES)
        path = url2pathname(parts.path)
        return _from_bytes(read_path(path, field=field, max_bytes=limits[0]), path, field, max_pixels, limits[1])
    if scheme is not None and not os.path.exists(text):
        remote = text[len(scheme) + 1 :].startswith("//")
        hint = " For object storage, pass an airflow.sdk.ObjectStoragePath instead of its URL." if remote else ""
        raise InvalidImageError(
            field, f"{scheme}: sources are not accepted (got {short(text, 80)!r}).{hint}", allowed=_SOURCES
        )
    return _from_bytes(read_path(text, field=field, max_bytes=limits[0]), text, field, max_pixels, limits[1])


def prepare_image(
    source: Any,
    *,
    field: str = "image_url",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    inline_limit: int | None = None,
) -> PreparedImage:
    """Validate ``source`` and turn it into a URL fal accepts: http(s) passes through, the rest becomes a data URI,
    or, above ``inline_limit`` bytes, is returned for the caller to upload. Files are read through
    ``guards.files`` (regular files within ``max_bytes`` only)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise InputValidationError("max_pixels", f"must be a positive integer, got {max_pixels!r}.")
    if isinstance(source, str):
        return _from_string(source, field, max_pixels, (max_bytes, inline_limit))
    if isinstance(source, Image.Image):
        return _from_pil(source, field, max_pixels)
    if not isinstance(source, (bytes, bytearray, memoryview, os.PathLike)) and not callable(
        getattr(source, "read_bytes", None)
    ):
        raise InvalidImageError(field, f"got {type(source).__name__}, which is not an image.", allowed=_SOURCES)
    data, description = read_source(source, field=field, max_bytes=max_bytes)
    return _from_bytes(data, description, field, max_pixels, inline_limit)
