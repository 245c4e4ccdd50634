"""Turn what callers hand the media functions (bytes, paths, PIL images, read_bytes() objects) into pixels."""

from __future__ import annotations

import os
from typing import Any

from PIL import Image, ImageOps

from airflow_provider_sam3.exceptions import InvalidImageError
from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES, check_size, read_regular_file

__all__ = ["SOURCE_KINDS", "decode", "load_image", "read_object", "read_path", "read_source", "short", "upright"]

SOURCE_KINDS = (
    "a PIL image, bytes, a local file path, or an object with read_bytes() such as airflow.sdk.ObjectStoragePath"
)

_EXIF_ORIENTATION = 0x0112


def short(text: str, limit: int = 200) -> str:
    """Cut ``text`` for log lines and error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_path(path: str | os.PathLike[str], *, field: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> bytes:
    """Read a local regular file within ``max_bytes`` (``guards.files``): missing paths, folders, FIFOs, devices
    and larger files are refused with a message naming the path."""
    return read_regular_file(os.fspath(path), field, max_bytes, setting=None)


def read_object(source: Any, *, field: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> tuple[bytes, str]:
    """Read an object-store path (``ObjectStoragePath``: ``stat()`` and ``open()``, through ``guards.files``) or
    another object with ``read_bytes()``, within ``max_bytes``, without importing Airflow."""
    description = short(str(source))
    if callable(getattr(source, "stat", None)) and callable(getattr(source, "open", None)):
        return read_regular_file(source, field, max_bytes, setting=None), description
    try:
        data = source.read_bytes()
    except Exception as exc:
        raise InvalidImageError(
            field, f"{description} could not be read ({type(exc).__name__}: {short(str(exc))})."
        ) from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageError(
            field, f"{description}.read_bytes() returned {type(data).__name__}, not bytes, so it is not an image."
        )
    check_size(len(data), field, max_bytes, setting=None)
    return bytes(data), description


def read_source(source: Any, *, field: str, max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> tuple[bytes, str]:
    """Bytes and a short description of a bytes-like, local path or read_bytes() source (remote paths: the latter),
    within ``max_bytes``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_size(len(data), field, max_bytes, setting=None)
        return data, f"bytes ({len(data)} B)"
    remote = getattr(source, "protocol", None) not in (None, "", "file", "local")
    if isinstance(source, (str, os.PathLike)) and not remote:
        name = os.fspath(source)
        return read_path(
            name.removeprefix("file://") if name.startswith("file://") else name, field=field, max_bytes=max_bytes
        ), name
    if callable(getattr(source, "read_bytes", None)):
        return read_object(source, field=field, max_bytes=max_bytes)
    raise InvalidImageError(field, f"got {type(source).__name__}, which is not an image.", allowed=SOURCE_KINDS)


def decode(data: bytes, description: str, *, field: str, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """Open and fully load image bytes through the one guarded decoder (``guards.images``: a pixel cap, and the
    size the caller expects)."""
    from airflow_provider_sam3.guards.images import decode_image

    return decode_image(data, field, expected_size=expected_size, description=description)


def load_image(source: Any, *, field: str, expected_size: tuple[int, int] | None = None) -> Image.Image:
    """A loaded PIL image from a PIL image, bytes, a path, or a read_bytes() object, within the pixel cap and, with
    ``expected_size`` (``(width, height)``), of that size."""
    if isinstance(source, Image.Image):
        from airflow_provider_sam3.guards.images import check_pixels

        check_pixels(source.width, source.height, field)
        if expected_size is not None and tuple(source.size) != tuple(expected_size):
            raise InvalidImageError(
                field, f"is {source.width}x{source.height}, not {expected_size[0]}x{expected_size[1]}."
            )
        return source
    data, description = read_source(source, field=field)
    return decode(data, description, field=field, expected_size=expected_size)


def upright(image: Image.Image) -> Image.Image | None:
    """The image turned as its EXIF orientation says (as it is sent to fal), or None when it needs no turning."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return None
    if orientation not in range(2, 9):
        return None
    return ImageOps.exif_transpose(image)
