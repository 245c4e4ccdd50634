"""What every result document shares: the version, the kinds, the header and its parts (timings, image, files,
masks), the error readers raise, and the small helpers documents use to read stored bytes and RLE masks.

Pure: pydantic here; numpy and Pillow are imported inside the helpers that need them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from airflow_provider_sam3.exceptions import Sam3ProviderError

__all__ = [
    "BATCH_READER_ADVICE",
    "CacheNote",
    "DocumentHeader",
    "Fetch",
    "FileEntry",
    "INLINE_DATA_LIMIT",
    "ImageInfo",
    "KIND_EMBEDDING",
    "KIND_FILES",
    "KIND_SEGMENTATION",
    "MAX_MASKS",
    "MAX_NOTES",
    "MAX_RLE_CHARS",
    "MAX_STORED_FILE_BYTES",
    "MaskEntry",
    "ResultDocumentError",
    "SCHEMA_VERSION",
    "Timings",
    "as_mapping",
    "check_document_pixels",
    "check_version",
    "error_field",
    "first_error",
    "rle_area",
    "rle_box",
]

SCHEMA_VERSION: Final = 1
"""Version of every document this module writes; readers refuse others (a newer provider wrote them)."""

INLINE_DATA_LIMIT = 64 * 1024
"""A ``sam3.files`` document keeps its JSON ``data`` inline up to this many bytes; ``copy_outputs`` moves larger
data to ``data.json`` in the output location (without an output location it stays inline, see ``FilesResult``)."""

KIND_SEGMENTATION: Final = "sam3.segmentation"
KIND_EMBEDDING: Final = "sam3.embedding"
KIND_FILES: Final = "sam3.files"

Fetch = Callable[[str], bytes]
"""Reads bytes at a URL or location, e.g. ``FalHook().download`` or ``lambda u: ObjectStoragePath(u).read_bytes()``."""


class ResultDocumentError(Sam3ProviderError, ValueError):
    """A result document could not be built or read: the message names the field and what to do."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


# ---------------------------------------------------------------------------------------------- document parts


MAX_MASKS = 1024
"""Most masks a segmentation document may hold (fal returns at most 32 per image): a reader refuses more."""
MAX_RLE_CHARS = 64 * 1024 * 1024
"""Longest RLE string a document may hold; decoding is bounded by the image's pixel cap anyway."""
MAX_STORED_FILE_BYTES = 256 * 1024 * 1024
"""Largest stored file a reader reads (a mask image, an embedding, ``data.json``)."""
MAX_NOTES = 64


class _Part(BaseModel):
    # Readers ignore fields they do not know: a later provider may add fields within schema version 1. A document
    # may come from anywhere (XCom, a file, a template): NaN and infinities are refused like any malformed value.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Timings(_Part):
    """When the request was submitted and completed (UTC; ISO 8601 in XCom, e.g. ``2026-12-07T03:30:29.123Z``);
    ``wait_seconds`` is their difference (queue + inference). Epoch seconds (what earlier documents held) read as the
    same moments."""

    submitted_at: AwareDatetime | None = None
    completed_at: AwareDatetime
    wait_seconds: float | None = None
    inference_seconds: float | None = None


class CacheNote(_Part):
    """The result cache's part in this document: ``hit`` (no request was sent; ``request_id`` is the request that
    paid, ``saved_usd`` what this task did not pay) or stored after this task paid for it (``hit`` false)."""

    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    hit: bool
    request_id: str | None = Field(default=None, max_length=200)
    saved_usd: float | None = Field(default=None, ge=0)


class ImageInfo(_Part):
    """The input image: where it came from (a URL or path, never a data URI) and its pixel size when known."""

    source: str | None = None
    width: int | None = None
    height: int | None = None

    @model_validator(mode="after")
    def _an_image_size(self) -> ImageInfo:
        if self.width is not None or self.height is not None:
            if self.width is None or self.height is None:
                raise ValueError("width and height go together")
            check_document_pixels(self.width, self.height)
        return self

    @property
    def size(self) -> tuple[int, int] | None:
        """``(width, height)`` when both are known."""
        return (self.width, self.height) if self.width and self.height else None


class FileEntry(_Part):
    """One file of the output. ``field`` is its path in fal's output (``video``, ``individual_glbs[1]``)."""

    field: str
    url: str | None = None
    stored_url: str | None = None
    content_type: str | None = None
    file_name: str | None = None

    @property
    def location(self) -> str | None:
        """The durable copy when there is one, else fal's (temporary) URL."""
        return self.stored_url or self.url


class MaskEntry(_Part):
    """One mask: fal's URL (null for inline data URIs), its copy, score, boxes and, for image-rle, the RLE string.

    ``box`` is fal's normalized ``[cx, cy, w, h]``; ``pixel_box`` is ``[x_min, y_min, x_max, y_max]`` in pixels of the
    input image, maxima exclusive, computed from ``box`` and the image size (null when either is unknown).
    """

    index: int = Field(ge=0, lt=MAX_MASKS)
    url: str | None = None
    stored_url: str | None = None
    content_type: str | None = None
    score: float | None = None
    box: list[float] | None = Field(default=None, min_length=4, max_length=4)
    pixel_box: list[float] | None = Field(default=None, min_length=4, max_length=4)
    rle: str | None = Field(default=None, max_length=MAX_RLE_CHARS)

    @property
    def location(self) -> str | None:
        """The durable copy when there is one, else fal's (temporary) URL."""
        return self.stored_url or self.url


class DocumentHeader(_Part):
    """The header every result document carries."""

    document_kind: ClassVar[str] = ""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: str
    endpoint_id: str
    request_id: str
    cost_usd: float | None = None
    timings: Timings
    image: ImageInfo | None = None
    output_location: str | None = None
    cache: CacheNote | None = None
    notes: list[str] = Field(default_factory=list, max_length=MAX_NOTES)
    """What the provider changed in fal's output and why (a NaN score stored as null, a box clamped to the image)."""

    def read_stored(self, location: str, field: str, read: Fetch | None = None) -> bytes:
        """The bytes of a file this document stored: a local file only inside its own ``output_location`` (links
        resolved), a regular file within ``MAX_STORED_FILE_BYTES``; anything else through the caller's ``read``."""
        from airflow_provider_sam3.exceptions import InputValidationError
        from airflow_provider_sam3.guards.files import confined, local_path, read_regular_file

        local = local_path(location)
        if local is None:
            if read is None:
                raise ResultDocumentError(
                    field,
                    f"{location[:200]!r} is not a local file; pass read=lambda u: ObjectStoragePath(u).read_bytes().",
                )
            return read(location)
        if not self.output_location:
            raise ResultDocumentError(
                field,
                "names a local file, but the document has no output_location, so the reader does not know where its "
                "files may be; read the file yourself and pass read=.",
            )
        try:
            path = confined(local, self.output_location, field)
            return read_regular_file(path, field, MAX_STORED_FILE_BYTES, setting="MAX_STORED_FILE_BYTES")
        except InputValidationError as error:
            raise ResultDocumentError(field, str(error).removeprefix(f"{field}: ")) from None

    def to_xcom(self) -> dict[str, Any]:
        """The plain-JSON dict an operator returns (what ``from_xcom`` reads back)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls: type[_D], value: Any) -> _D:
        """Read a document pulled from XCom: the dict, its JSON text, or the model itself.

        Refuses documents of another ``kind`` or ``schema_version`` with a message saying what to do.
        """
        data = as_mapping(value)
        check_version(data)
        kind = data.get("kind")
        if cls.document_kind and kind != cls.document_kind:
            raise ResultDocumentError(
                "kind",
                f"is {kind!r}, but {cls.__name__} reads {cls.document_kind!r} documents; use result_from_xcom() to "
                "read any kind, or pull the XCom of the right task.",
            )
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise ResultDocumentError(
                error_field(error), f"the {kind} document is malformed ({first_error(error)})."
            ) from None


_D = TypeVar("_D", bound=DocumentHeader)
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------- helpers


def check_document_pixels(width: int, height: int) -> None:
    """Refuse an image size no image can have: a document naming one is malformed (or hostile)."""
    from airflow_provider_sam3.guards.images import DEFAULT_MAX_PIXELS, MAX_SIDE

    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE and width * height <= DEFAULT_MAX_PIXELS):
        raise ValueError(
            f"{width}x{height} is not an image size this provider reads (sides 1 to {MAX_SIDE}, at most "
            f"{DEFAULT_MAX_PIXELS:,} pixels)"
        )


def rle_area(rle: str | None, size: tuple[int, int] | None, field: str) -> int | None:
    """Pixels set by an RLE mask, its runs checked (against the image when its size is known)."""
    if rle is None:
        return None
    from airflow_provider_sam3.guards.images import MAX_SIDE
    from airflow_provider_sam3.media.rle import rle_area as area

    width, height = size or (MAX_SIDE, MAX_SIDE)
    return _as_document_error(field, lambda: area(rle, width, height, field=field))


def rle_box(rle: str, size: tuple[int, int], field: str) -> tuple[float, float, float, float] | None:
    """Tight pixel box (maxima exclusive) of an RLE mask from its checked runs alone."""
    from airflow_provider_sam3.media.rle import rle_box as box

    return _as_document_error(field, lambda: box(rle, size[0], size[1], field=field))


def _as_document_error(field: str, call: Callable[[], _T]) -> _T:
    from airflow_provider_sam3.exceptions import InputValidationError

    try:
        return call()
    except InputValidationError as error:
        raise ResultDocumentError(field, str(error).removeprefix(f"{field}: ")) from None


def as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, DocumentHeader):
        return value.model_dump(mode="json")
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise ResultDocumentError("value", f"is text but not JSON ({error}); pass the XCom value itself.") from None
    if not isinstance(value, Mapping):
        raise ResultDocumentError(
            "value", f"got {type(value).__name__}; pass the dict a SAM 3 task returned (or its JSON text)."
        )
    return value


BATCH_READER_ADVICE = (
    "read a batch with airflow_provider_sam3.storage.batch_results.BatchResults.from_xcom(summary): it iterates the "
    "manifest's rows, and row.document() is the image's result document"
)


def check_version(data: Mapping[str, Any]) -> None:
    if data.get("kind") == "sam3.batch" or ("manifest" in data and "images" in data):
        raise ResultDocumentError(
            "kind", f"this is a batch's summary, not one image's result document; {BATCH_READER_ADVICE}."
        )
    if "kind" not in data and "status" in data and "source" in data:
        raise ResultDocumentError(
            "kind", f"this is a row of a batch manifest, not a result document; {BATCH_READER_ADVICE}."
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultDocumentError(
            "schema_version",
            f"is {version!r}, but this airflow-provider-sam3 reads version {SCHEMA_VERSION}; "
            + (
                "upgrade the provider where this task runs."
                if isinstance(version, int) and version > SCHEMA_VERSION
                else "this is not a SAM 3 result document."
            ),
        )


def error_field(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    loc = errors[0].get("loc", ()) if errors else ()
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "output"


def first_error(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    if not errors:
        return str(error)
    first = errors[0]
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{error_field(error)}: {first.get('msg')}{more}"
