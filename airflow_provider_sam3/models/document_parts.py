"""What every result document shares: the version, the kinds, the header and its parts (timings, image, files,
masks), the error readers raise, and the small helpers documents use to read stored bytes and RLE masks.

Pure: pydantic here; numpy and Pillow are imported inside the helpers that need them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from airflow_provider_sam3.exceptions import Sam3ProviderError

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


class _Part(BaseModel):
    # Readers ignore fields they do not know: a later provider may add fields within schema version 1.
    model_config = ConfigDict(extra="ignore")


class Timings(_Part):
    """Epoch seconds of submit and completion; ``wait_seconds`` is their difference (queue + inference)."""

    submitted_at: float | None = None
    completed_at: float
    wait_seconds: float | None = None
    inference_seconds: float | None = None


class ImageInfo(_Part):
    """The input image: where it came from (a URL or path, never a data URI) and its pixel size when known."""

    source: str | None = None
    width: int | None = None
    height: int | None = None


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

    index: int
    url: str | None = None
    stored_url: str | None = None
    content_type: str | None = None
    score: float | None = None
    box: list[float] | None = None
    pixel_box: list[float] | None = None
    rle: str | None = None

    @property
    def location(self) -> str | None:
        """The durable copy when there is one, else fal's (temporary) URL."""
        return self.stored_url or self.url


class _Document(_Part):
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

    def to_xcom(self) -> dict[str, Any]:
        """The plain-JSON dict an operator returns (what ``from_xcom`` reads back)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_xcom(cls: type[_D], value: Any) -> _D:
        """Read a document pulled from XCom: the dict, its JSON text, or the model itself.

        Refuses documents of another ``kind`` or ``schema_version`` with a message saying what to do.
        """
        data = _as_mapping(value)
        _check_version(data)
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
                _error_field(error), f"the {kind} document is malformed ({_first_error(error)})."
            ) from None


_D = TypeVar("_D", bound=_Document)


# ---------------------------------------------------------------------------------------------- helpers


def local_path(location: str) -> str | None:
    """The filesystem path of a local location (``/abs/path`` or ``file:///abs/path``), else None."""
    if location.startswith("file://"):
        parts = urlsplit(location)
        return unquote(parts.path) if parts.netloc in ("", "localhost") else None
    if "://" in location or location[:5].lower() == "data:":
        return None
    return location


def _read_local(path: str, *, field: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise ResultDocumentError(field, f"could not read {path!r} ({error.strerror or error}).") from error


def _rle_area(rle: str | None) -> int | None:
    if rle is None:
        return None
    return sum(int(v) for v in rle.split()[1::2])


def _rle_box(rle: str, width: int) -> tuple[float, float, float, float] | None:
    """Tight pixel box (maxima exclusive) of an RLE mask from its runs alone; a run that wraps spans all columns."""
    values = [int(v) for v in rle.split()]
    if not values:
        return None
    x_min, x_max, y_min, y_max = width, 0, None, 0
    for start, length in zip(values[0::2], values[1::2]):
        first, last = start - 1, start + length - 2  # 0-based, inclusive
        row0, row1 = first // width, last // width
        if row0 == row1:
            x_min, x_max = min(x_min, first % width), max(x_max, last % width + 1)
        else:
            x_min, x_max = 0, width
        y_min = row0 if y_min is None else min(y_min, row0)
        y_max = max(y_max, row1 + 1)
    if y_min is None:  # one number and no run: no pixel is set
        return None
    return (float(x_min), float(y_min), float(x_max), float(y_max))


def _as_mapping(value: Any) -> Mapping[str, Any]:
    if isinstance(value, _Document):
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


def _check_version(data: Mapping[str, Any]) -> None:
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


def _error_field(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    loc = errors[0].get("loc", ()) if errors else ()
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "output"


def _first_error(error: ValidationError) -> str:
    errors = error.errors(include_url=False)
    if not errors:
        return str(error)
    first = errors[0]
    more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
    return f"{_error_field(error)}: {first.get('msg')}{more}"
