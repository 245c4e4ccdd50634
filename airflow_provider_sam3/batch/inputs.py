"""A batch's images on the way in: validated from their headers before anything is paid, read in full only when
their turn to be submitted comes, and sent inline (data URI) or through fal's storage when large.

Validation reads each file's header (format, size, EXIF orientation) and its byte size: nothing of the image is
kept, so memory does not grow with the number or the size of the images. Only regular files are read: a FIFO
would hang the task, a device (``/dev/zero`` named ``.png``) would be read forever.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError, InvalidImageError
from airflow_provider_sam3.guards import files
from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES, MiB

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.batch.ports import FalQueue

__all__ = [
    "DEFAULT_UPLOAD_ABOVE_BYTES",
    "INSPECT_CONCURRENCY",
    "ImageFacts",
    "InputLimits",
    "PLACEHOLDER_IMAGE_URL",
    "ReadImage",
    "build_body",
    "check_image_fields",
    "image_fields",
    "image_url",
    "inspect_image",
    "inspect_images",
    "read_image",
    "read_regular_file",
]

DEFAULT_UPLOAD_ABOVE_BYTES = 4 * MiB
"""Inputs larger than this go through fal's storage and are sent as URLs (fal's guidance: URLs for anything but
small files; a data URI grows the submit call by 4/3 of the file, and fal reads it from the request body). Measured
in ``bench/batch_scale.py`` (docs/benchmarks.md, "batch-scale")."""
INSPECT_CONCURRENCY = 8
"""Image headers read at once while validating (object storage answers each read after a round trip)."""


@dataclass(frozen=True)
class InputLimits:
    """How a batch treats its input files."""

    upload_above_bytes: int | None = DEFAULT_UPLOAD_ABOVE_BYTES
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES


@dataclass(frozen=True)
class ImageFacts:
    """What validation learnt of an image: its size as fal sees it (upright), and its file's byte size."""

    width: int | None
    height: int | None
    byte_size: int | None


def inspect_images(
    images: list[tuple[str, BatchImage]], limits: InputLimits
) -> list[ImageFacts | InputValidationError]:
    """Inspect ``(field, image)`` pairs concurrently (bounded); each gets its facts or the error that refuses it."""

    def one(item: tuple[str, BatchImage]) -> ImageFacts | InputValidationError:
        where, image = item
        try:
            return inspect_image(image, where, limits)
        except InputValidationError as error:
            return error

    if len(images) <= 1:
        return [one(item) for item in images]
    with ThreadPoolExecutor(max_workers=INSPECT_CONCURRENCY, thread_name_prefix="sam3-inspect") as pool:
        return list(pool.map(one, images))


def inspect_image(image: BatchImage, where: str, limits: InputLimits) -> ImageFacts:
    """Validate one image from its header: a regular file within ``max_input_bytes``, in a format fal accepts,
    with a pixel count within bounds. http(s) URLs and data URIs are checked as the single operators check them."""
    from airflow_provider_sam3.media.inputs import prepare_image

    source = image.source
    if _is_url(source) or source[:5].lower() == "data:":
        prepared = prepare_image(source, field=where)
        return ImageFacts(prepared.width, prepared.height, prepared.byte_size)
    return _header_facts(image.opened(), where, limits)


@dataclass(frozen=True)
class ReadImage:
    """An image read when its turn comes: the bytes to send (a local or object-storage file, checked and turned
    upright) with their ``content_digest``, or the URL to send (an http(s) URL or data URI, checked)."""

    facts: ImageFacts
    url: str | None = None
    data: bytes | None = None
    mime: str | None = None
    digest: str | None = None


async def read_image(image: BatchImage, where: str, limits: InputLimits) -> ReadImage:
    """Read one image for its request: the file is read (again checked to be a regular file within the cap),
    decoded and turned upright; a URL is checked as the single operators check it."""
    import asyncio

    if _is_url(image.source) or image.source[:5].lower() == "data:":
        url, facts = await asyncio.to_thread(_prepared_url, image.source, where)
        return ReadImage(facts, url=url)
    return await asyncio.to_thread(_read_file, image, where, limits)


async def image_url(hook: FalQueue, image: BatchImage, read: ReadImage, limits: InputLimits) -> str:
    """What the request's ``image_url`` holds: the URL given, the bytes inline (data URI), or, above
    ``upload_above_bytes``, a fal storage URL they were uploaded to."""
    if read.url is not None:
        return read.url
    assert read.data is not None and read.mime is not None  # a file read always has both
    if limits.upload_above_bytes is not None and len(read.data) > limits.upload_above_bytes:
        name = os.path.basename(image.source.rstrip("/")) or "image"
        return await hook.aupload(read.data, read.mime, name)
    from airflow_provider_sam3.media.inputs import to_data_uri

    return to_data_uri(read.data, read.mime)


def image_fields(endpoint: Any, image: BatchImage, shared: dict[str, Any], url: str, facts: ImageFacts) -> dict:
    """The request body of one image: the batch's fields, the image's own, and its ``image_url``."""
    return check_image_fields(endpoint, {**shared, **image.arguments, "image_url": url}, facts)


async def build_body(
    hook: FalQueue,
    endpoint: Any,
    image: BatchImage,
    shared: dict[str, Any],
    where: str,
    limits: InputLimits,
) -> tuple[dict[str, Any], ImageFacts]:
    """The request body for one image, built when its turn comes (``read_image``, then ``image_url``)."""
    read = await read_image(image, where, limits)
    url = await image_url(hook, image, read, limits)
    return image_fields(endpoint, image, shared, url, read.facts), read.facts


PLACEHOLDER_IMAGE_URL = "https://placeholder.invalid/image.png"
"""Stands for the image while the other fields are validated (the image itself is checked from its header)."""


def check_image_fields(endpoint: Any, arguments: dict[str, Any], facts: ImageFacts) -> dict[str, Any]:
    """The validated request body for these fields, with points and boxes checked against the image's size."""
    from airflow_provider_sam3.models.geometry import check_prompt_geometry

    body = endpoint.validate_input(arguments).to_request()
    check_prompt_geometry(body, {"width": facts.width, "height": facts.height})
    return body


def _prepared_url(source: str, where: str) -> tuple[str, ImageFacts]:
    from airflow_provider_sam3.media.inputs import prepare_image

    prepared = prepare_image(source, field=where)
    return prepared.url, ImageFacts(prepared.width, prepared.height, prepared.byte_size)


def _read_file(image: BatchImage, where: str, limits: InputLimits) -> ReadImage:
    """In a thread: the file read and checked, and its digest (hashing a photo takes milliseconds)."""
    from airflow_provider_sam3.storage.cache_keys import content_digest

    checked = _read_checked(image, where, limits)
    facts = ImageFacts(checked.width, checked.height, len(checked.data))
    return ReadImage(facts, data=checked.data, mime=checked.mime, digest=content_digest(checked.data))


def _read_checked(image: BatchImage, where: str, limits: InputLimits) -> Any:
    from airflow_provider_sam3.media.inputs import check_image_bytes

    return check_image_bytes(read_regular_file(image.opened(), where, limits), image.source, where)


def read_regular_file(opened: Any, where: str, limits: InputLimits) -> bytes:
    """The bytes of a regular file within ``limits.max_input_bytes`` (``guards.files``)."""
    return files.read_regular_file(opened, where, limits.max_input_bytes)


def _is_url(source: str) -> bool:
    return source[:8].lower() == "https://" or source[:7].lower() == "http://"


def _header_facts(opened: Any, where: str, limits: InputLimits) -> ImageFacts:
    """Format, size and orientation from the first bytes of a regular file within the cap (Pillow reads headers
    lazily)."""
    from PIL import UnidentifiedImageError, features

    from airflow_provider_sam3.guards.images import open_image
    from airflow_provider_sam3.media.inputs import accepted_format

    description = str(opened)
    with files.open_regular_file(opened, where, limits.max_input_bytes) as opened_file:
        handle = opened_file.file
        try:
            image = open_image(handle, where, description=description)
        except UnidentifiedImageError:
            handle.seek(0)
            head = handle.read(512)
            from airflow_provider_sam3.media.inputs import has_avif_brand, looks_like

            if has_avif_brand(head) and not features.check("avif"):
                return ImageFacts(None, None, None)
            raise InvalidImageError(
                where, f"{description} is not an accepted image: its content looks like {looks_like(head)}."
            ) from None
        with image:
            accepted_format(image, description, where)
            width, height = image.size
            orientation = _header_orientation(image)
    if orientation in (5, 6, 7, 8):  # turned a quarter: fal sees it with width and height swapped
        width, height = height, width
    return ImageFacts(width, height, None)


def _header_orientation(image: Any) -> int | None:
    """The EXIF orientation found in the file's header, without decoding pixels. Pillow's ``getexif()`` on a PNG
    decodes the whole image to look for an eXIf chunk after the pixels; here only one met before them counts
    (the size is set again from the decoded image when the body is built)."""
    try:
        if image.format == "PNG":
            raw = image.info.get("exif")
            if not raw:
                return None
            from PIL import Image

            exif = Image.Exif()
            exif.load(raw)
            return exif.get(0x0112)
        return image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - unreadable EXIF: Pillow sends the image as stored
        return None
