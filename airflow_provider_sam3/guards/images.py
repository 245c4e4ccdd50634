"""Image and mask decoding with a pixel cap: one decoder for inputs, outputs, renders and readers.

Pillow only warns about a large image until it is twice its own limit, and a 560 KB PNG can announce 12,000 x
12,000 pixels (1.3 GB decoded). Here the size is read from the header and refused above ``max_pixels`` (the
provider's input limit) before a pixel is decoded, and a mask whose size differs from its image's is refused too:
fal writes masks at the input's size, so any other size is not a mask of that image.
"""

from __future__ import annotations

import io
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InvalidImageError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "BROKEN_FILE_ADVICE",
    "DEFAULT_MAX_PIXELS",
    "MAX_SIDE",
    "check_pixels",
    "decode_image",
    "load_pixels",
    "open_image",
]

BROKEN_FILE_ADVICE = "export or copy it again (an upload or copy that stopped early leaves such files)"
"""What to do about a file of an accepted format that does not decode: its format is fine, its bytes are not."""

DEFAULT_MAX_PIXELS = 8192 * 8192
"""Largest width x height accepted anywhere: inputs, masks, renders, documents' image sizes."""
MAX_SIDE = 65_535
"""Longest side a PNG or JPEG can declare; a larger number in a document is not an image size."""


def check_pixels(width: Any, height: Any, where: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` as positive whole numbers whose product is within ``max_pixels``, else an error naming
    ``where``."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
            raise InvalidImageError(where, f"{name} {value!r} is not an image size (a whole number 1 to {MAX_SIDE}).")
    if width * height > max_pixels:
        raise InvalidImageError(
            where,
            f"is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,} pixels; "
            "downscale it.",
        )
    return width, height


def open_image(
    source: bytes | IO[bytes],
    where: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_size: tuple[int, int] | None = None,
    description: str = "the image",
) -> Image.Image:
    """The image opened from its header, not decoded: refused (naming ``where``) when larger than ``max_pixels`` or,
    with ``expected_size`` (``(width, height)``), of another size. ``UnidentifiedImageError`` is left to the caller,
    whose message knows what the bytes were meant to be."""
    from PIL import Image

    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    try:
        image = Image.open(handle)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImageError(
            where,
            f"{description} is too large: Pillow refused it as a possible decompression bomb ({error}). The limit "
            f"here is {max_pixels:,} pixels.",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        if type(error).__name__ == "UnidentifiedImageError":
            raise
        raise InvalidImageError(
            where, f"{description} is truncated or corrupt ({error}); {BROKEN_FILE_ADVICE}."
        ) from None
    if expected_size is not None and tuple(image.size) != tuple(expected_size):  # the more precise reason first
        width, height = expected_size
        raise InvalidImageError(
            where,
            f"{description} is {image.width}x{image.height}, but its image is {width}x{height}: a mask is the size "
            "of the image it belongs to.",
        )
    check_pixels(image.width, image.height, where, max_pixels=max_pixels)
    return image


def decode_image(
    data: bytes,
    where: str,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    expected_size: tuple[int, int] | None = None,
    description: str = "the image",
) -> Image.Image:
    """``open_image``, then the pixels decoded (a truncated file is refused by name)."""
    from PIL import UnidentifiedImageError

    if not data:
        raise InvalidImageError(where, f"{description} is empty; it must contain an image.")
    try:
        image = open_image(data, where, max_pixels=max_pixels, expected_size=expected_size, description=description)
    except UnidentifiedImageError:
        raise InvalidImageError(where, f"{description} is not an image Pillow can read.") from None
    load_pixels(image, where, description)
    return image


def load_pixels(image: Image.Image, where: str, description: str) -> None:
    """Decode ``image``'s pixels now; a truncated or corrupt file is refused by name (``InvalidImageError``)."""
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise InvalidImageError(
            where, f"{description} is truncated or corrupt ({error}); {BROKEN_FILE_ADVICE}."
        ) from None
