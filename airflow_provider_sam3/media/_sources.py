"""Turn what callers hand the media functions (bytes, paths, PIL images, read_bytes() objects) into pixels."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from airflow_provider_sam3.exceptions import InvalidImageError

SOURCE_KINDS = (
    "a PIL image, bytes, a local file path, or an object with read_bytes() such as airflow.sdk.ObjectStoragePath"
)

_EXIF_ORIENTATION = 0x0112


def short(text: str, limit: int = 200) -> str:
    """Cut ``text`` for log lines and error messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_path(path: str | os.PathLike[str], *, field: str) -> bytes:
    """Read a local file, refusing missing paths and directories with a message naming the path."""
    name = os.fspath(path)
    target = Path(name).expanduser()
    if not target.exists():
        raise InvalidImageError(field, f"the file {name!r} does not exist; give the path of an existing image file.")
    if target.is_dir():
        raise InvalidImageError(field, f"{name!r} is a directory; give the path of an image file.")
    try:
        return target.read_bytes()
    except OSError as exc:
        raise InvalidImageError(field, f"the file {name!r} could not be read ({exc.strerror or exc}).") from exc


def read_object(source: Any, *, field: str) -> tuple[bytes, str]:
    """Read an object with ``read_bytes()`` (ObjectStoragePath, pathlib.Path, ...) without importing Airflow."""
    description = short(str(source))
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
    return bytes(data), description


def read_source(source: Any, *, field: str) -> tuple[bytes, str]:
    """Bytes and a short description of a bytes-like, local path or read_bytes() source (remote paths: the latter)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        return data, f"bytes ({len(data)} B)"
    remote = getattr(source, "protocol", None) not in (None, "", "file", "local")
    if isinstance(source, (str, os.PathLike)) and not remote:
        return read_path(source, field=field), os.fspath(source)
    if callable(getattr(source, "read_bytes", None)):
        return read_object(source, field=field)
    raise InvalidImageError(field, f"got {type(source).__name__}, which is not an image.", allowed=SOURCE_KINDS)


def decode(data: bytes, description: str, *, field: str) -> Image.Image:
    """Open and fully load image bytes, translating Pillow's failures into InvalidImageError."""
    if not data:
        raise InvalidImageError(field, f"{description} is empty; it must contain an image.")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise InvalidImageError(field, f"{description} is not an image Pillow can read.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(field, f"{description} is too large to decode safely: {exc}") from exc
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(field, f"{description} is truncated or corrupt ({exc}).") from exc
    return image


def load_image(source: Any, *, field: str) -> Image.Image:
    """A loaded PIL image from a PIL image, bytes, a path, or a read_bytes() object."""
    if isinstance(source, Image.Image):
        return source
    data, description = read_source(source, field=field)
    return decode(data, description, field=field)


def upright(image: Image.Image) -> Image.Image | None:
    """The image turned as its EXIF orientation says (as it is sent to fal), or None when it needs no turning."""
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:
        return None
    if orientation not in range(2, 9):
        return None
    return ImageOps.exif_transpose(image)
