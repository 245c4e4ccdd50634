"""The XCom result documents: small, versioned JSON that every SAM 3 task returns.

An operator returns ``build_result(...).model_dump(mode="json")``: a plain dict, so downstream tasks, Jinja
templates and SQL read it with no Airflow serde configuration, the same under ``dag.test()`` and real runs. Bytes
never go into a document: masks, previews, videos, meshes and embeddings are referenced by URL (fal's, temporary)
and by ``stored_url`` (the copy in the user's storage, written by ``operators.outputs.copy_outputs``).

Three kinds, one header (``schema_version``, ``kind``, ``endpoint_id``, ``request_id``, ``cost_usd``, ``timings``,
``image``, ``output_location``):

- ``sam3.segmentation`` (image, image-rle): one entry per mask with score, fal's normalized box and the pixel box.
- ``sam3.embedding`` (image/embed): where the embedding bytes were written, their size and sha256; never the blob.
- ``sam3.files`` (video, video-rle, video-rle-objects, 3D): every File in the output plus its JSON metadata.

Pure: pydantic here; numpy and Pillow are imported inside the helpers that decode masks or embeddings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, ClassVar, Final, Literal, TypeVar, Union, overload
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_provider_sam3.exceptions import Sam3ProviderError
from airflow_provider_sam3.models.files import File

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.reference import RequestReference

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


# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationResult(_Document):
    """Result of ``image`` and ``image-rle``: one entry per mask, the preview, and any other output files.

    RLE documents (image-rle) carry each mask's RLE string inline (fal's Kaggle-style runs, about 12 bytes per run)
    and ``rle_size`` = ``[width, height]`` needed to decode them; image documents reference mask PNGs.
    """

    document_kind: ClassVar[str] = KIND_SEGMENTATION

    kind: Literal["sam3.segmentation"] = KIND_SEGMENTATION
    masks: list[MaskEntry] = Field(default_factory=list)
    preview: FileEntry | None = None
    rle_size: list[int] | None = None
    files: list[FileEntry] = Field(default_factory=list)

    @property
    def is_rle(self) -> bool:
        return self.rle_size is not None or any(m.rle is not None for m in self.masks)

    @property
    def scores(self) -> list[float | None]:
        """One score per mask (null where fal sent none; ask for ``include_scores=True``)."""
        return [m.score for m in self.masks]

    def pixel_boxes(self) -> list[list[float] | None]:
        """One ``[x_min, y_min, x_max, y_max]`` pixel box per mask, maxima exclusive; None where unknown.

        Lists, not tuples, so they pass through XCom as plain JSON.
        """
        return [list(m.pixel_box) if m.pixel_box else None for m in self.masks]

    def mask_arrays(
        self, fetch: Fetch | None = None, *, read: Fetch | None = None, size: tuple[int, int] | None = None
    ) -> list[np.ndarray]:
        """Boolean ``(height, width)`` arrays, one per mask.

        RLE documents decode locally (``size`` = ``(width, height)`` overrides ``rle_size``). Image documents read
        each mask PNG: a local ``stored_url`` (path or ``file://``) directly, another ``stored_url`` with ``read``
        (e.g. ``lambda u: ObjectStoragePath(u).read_bytes()``), else fal's ``url`` with ``fetch``
        (e.g. ``FalHook().download``; fal's URLs expire).
        """
        if not self.masks and any(f.field == "rle" for f in self.files):
            raise ResultDocumentError(
                "files[rle]", "fal returned the RLE as a file, not strings; download that file and decode it yourself."
            )
        if self.is_rle:
            from airflow_provider_sam3.media.rle import rle_decode

            width, height = self._rle_dims(size)
            return [rle_decode(m.rle or "", width, height, field=f"masks[{m.index}].rle") for m in self.masks]
        from airflow_provider_sam3.media.masks import mask_from_image

        return [mask_from_image(self._mask_bytes(m, fetch, read), field=f"masks[{m.index}]") for m in self.masks]

    def areas(self) -> list[int | None]:
        """Pixel count per mask from the RLE runs (no decoding); None for image documents (see ``to_rows``)."""
        return [_rle_area(m.rle) if self.is_rle else None for m in self.masks]

    def to_rows(
        self,
        label: str | None = None,
        *,
        with_area: bool = False,
        fetch: Fetch | None = None,
        read: Fetch | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per mask, ready for a SQL table.

        Columns: ``image``, ``request_id``, ``mask_index``, ``label``, ``score``, ``x_min``, ``y_min``, ``x_max``,
        ``y_max`` (pixels, maxima exclusive), ``area`` (pixels) and ``mask_url`` (the stored copy, else fal's URL).
        ``area`` comes from the RLE for image-rle; for mask images only with ``with_area=True`` (reads the PNGs as
        ``mask_arrays`` does), else None. Where fal sent no box but the mask is at hand, the box is the mask's
        tight box.
        """
        arrays: list[Any] | None = None
        if with_area and not self.is_rle:
            arrays = self.mask_arrays(fetch, read=read)
        rle_dims = self._rle_dims(None, required=False) if self.is_rle else None
        rows = []
        for position, mask in enumerate(self.masks):
            box = tuple(mask.pixel_box) if mask.pixel_box else None
            area: int | None = None
            if arrays is not None:
                from airflow_provider_sam3.media.masks import mask_stats

                stats = mask_stats(arrays[position])
                area = stats.area
                box = box or (tuple(float(v) for v in stats.box) if stats.box else None)
            elif self.is_rle:
                area = _rle_area(mask.rle)
                if box is None and rle_dims is not None:
                    box = _rle_box(mask.rle or "", rle_dims[0])
            rows.append(
                {
                    "image": self.image.source if self.image else None,
                    "request_id": self.request_id,
                    "mask_index": mask.index,
                    "label": label,
                    "score": mask.score,
                    "x_min": box[0] if box else None,
                    "y_min": box[1] if box else None,
                    "x_max": box[2] if box else None,
                    "y_max": box[3] if box else None,
                    "area": area,
                    "mask_url": mask.location,
                }
            )
        return rows

    @overload
    def _rle_dims(self, size: tuple[int, int] | None, *, required: Literal[True] = ...) -> tuple[int, int]: ...
    @overload
    def _rle_dims(self, size: tuple[int, int] | None, *, required: bool) -> tuple[int, int] | None: ...
    def _rle_dims(self, size: tuple[int, int] | None, *, required: bool = True) -> tuple[int, int] | None:
        dims = size or self.rle_size
        if dims is None:
            if not required:
                return None
            raise ResultDocumentError(
                "rle_size",
                "is unknown, so the RLE masks cannot be decoded; pass size=(width, height) of the input image, or "
                "give the operator an image whose size it can read.",
            )
        width, height = dims
        return int(width), int(height)

    def _mask_bytes(self, mask: MaskEntry, fetch: Fetch | None, read: Fetch | None) -> bytes:
        field = f"masks[{mask.index}]"
        if mask.stored_url:
            local = local_path(mask.stored_url)
            if local is not None:
                return _read_local(local, field=f"{field}.stored_url")
            if read is not None:
                return read(mask.stored_url)
        if mask.url and fetch is not None:
            return fetch(mask.url)
        if mask.stored_url:
            raise ResultDocumentError(
                f"{field}.stored_url",
                f"{mask.stored_url!r} is not a local file; pass read=lambda u: ObjectStoragePath(u).read_bytes().",
            )
        if mask.url:
            raise ResultDocumentError(
                f"{field}.url", "the mask was not copied; pass fetch=FalHook().download to read fal's URL."
            )
        raise ResultDocumentError(
            field,
            "has neither url nor stored_url: fal returned it inline (sync_mode) and it was not copied; give the "
            "operator an output_path when using sync_mode.",
        )


# ---------------------------------------------------------------------------------------------- embedding


class EmbeddingResult(_Document):
    """Result of ``image/embed``: a reference to the embedding bytes, never the bytes.

    fal does not document the embedding's dtype or shape: ``load_array`` asks for both and checks the byte count.
    ``stored_url`` is null only when no ``output_path`` was given (the bytes were then not kept).
    """

    document_kind: ClassVar[str] = KIND_EMBEDDING

    kind: Literal["sam3.embedding"] = KIND_EMBEDDING
    stored_url: str | None = None
    byte_size: int
    sha256: str

    def load_bytes(self, source: Any = None) -> bytes:
        """The embedding bytes, checked against ``byte_size`` and ``sha256``.

        ``source``: an object with ``read_bytes()`` (``ObjectStoragePath(doc.stored_url)``, needed for remote
        storage) or a local path; by default the local ``stored_url`` (a path or ``file://`` URL) is read.
        """
        if source is None:
            if not self.stored_url:
                raise ResultDocumentError(
                    "stored_url",
                    "is null: the embedding was not written anywhere; give the operator an output_path.",
                )
            local = local_path(self.stored_url)
            if local is None:
                raise ResultDocumentError(
                    "stored_url",
                    f"{self.stored_url!r} is not a local file; pass load_bytes(ObjectStoragePath(doc.stored_url)).",
                )
            data = _read_local(local, field="stored_url")
        elif callable(getattr(source, "read_bytes", None)):
            data = bytes(source.read_bytes())
        elif isinstance(source, (str, os.PathLike)):
            local = local_path(os.fspath(source))
            if local is None:
                raise ResultDocumentError("source", f"{source!r} is not a local file; pass an ObjectStoragePath.")
            data = _read_local(local, field="source")
        else:
            raise ResultDocumentError(
                "source", f"got {type(source).__name__}; give an ObjectStoragePath, a local path, or nothing."
            )
        if len(data) != self.byte_size or hashlib.sha256(data).hexdigest() != self.sha256:
            raise ResultDocumentError(
                "stored_url",
                f"the bytes read ({len(data)} B) do not match byte_size {self.byte_size} and sha256 "
                f"{self.sha256[:12]}...; "
                "the stored file was changed or belongs to another request.",
            )
        return data

    def load_array(self, dtype: npt.DTypeLike, shape: int | Sequence[int], source: Any = None) -> np.ndarray:
        """The embedding as an array of the ``dtype`` (e.g. ``"<f4"``) and ``shape`` the caller knows it has."""
        import base64

        from airflow_provider_sam3.media.embedding import embedding_array

        data = self.load_bytes(source)
        return embedding_array(base64.b64encode(data).decode("ascii"), dtype=dtype, shape=shape)


# ---------------------------------------------------------------------------------------------- files


class FilesResult(_Document):
    """Result of the video and 3D endpoints: every File in the output, plus the rest of the output as ``data``.

    ``data`` is fal's output without its files, kept as fal sent it (3D poses and body metadata, video-rle's
    per-frame ``rle``/``boxes``/``scores``, video-rle-objects' ``frames``). ``data_bytes`` is its JSON size. When it
    exceeds ``INLINE_DATA_LIMIT`` (64 KiB) and outputs are copied, ``copy_outputs`` writes it to ``data.json``,
    sets ``data_stored_url`` and drops it from the document; without an output location it stays inline (a paid
    result is never dropped) and ``data_oversize`` is true, so the operator can warn. ``load_data()`` reads either.
    """

    document_kind: ClassVar[str] = KIND_FILES

    kind: Literal["sam3.files"] = KIND_FILES
    files: list[FileEntry] = Field(default_factory=list)
    data: dict[str, Any] | None = None
    data_bytes: int = 0
    data_stored_url: str | None = None

    @property
    def data_oversize(self) -> bool:
        """True when ``data`` is inline although it is larger than ``INLINE_DATA_LIMIT``."""
        return self.data is not None and self.data_bytes > INLINE_DATA_LIMIT

    def file(self, field: str) -> FileEntry | None:
        """The file at ``field`` (``"video"``, ``"model_glb"``, ``"individual_glbs[0]"``), or None."""
        return next((f for f in self.files if f.field == field), None)

    def load_data(self, read: Fetch | None = None) -> dict[str, Any] | None:
        """The metadata: inline, or read from ``data_stored_url`` (local directly; remote with ``read``)."""
        if self.data is not None or not self.data_stored_url:
            return self.data
        local = local_path(self.data_stored_url)
        if local is not None:
            raw = _read_local(local, field="data_stored_url")
        elif read is not None:
            raw = read(self.data_stored_url)
        else:
            raise ResultDocumentError(
                "data_stored_url",
                f"{self.data_stored_url!r} is not local; pass read=lambda u: ObjectStoragePath(u).read_bytes().",
            )
        return json.loads(raw)


ResultDocument = Union[SegmentationResult, EmbeddingResult, FilesResult]
DOCUMENT_CLASSES: dict[str, type[_Document]] = {
    KIND_SEGMENTATION: SegmentationResult,
    KIND_EMBEDDING: EmbeddingResult,
    KIND_FILES: FilesResult,
}
_KIND_OF_ENDPOINT = {
    "image": KIND_SEGMENTATION,
    "image-rle": KIND_SEGMENTATION,
    "embed": KIND_EMBEDDING,
    "video": KIND_FILES,
    "video-rle": KIND_FILES,
    "video-rle-objects": KIND_FILES,
    "3d-objects": KIND_FILES,
    "3d-body": KIND_FILES,
    "3d-align": KIND_FILES,
}


def result_from_xcom(value: Any) -> ResultDocument:
    """Read any result document (dict, JSON text or model), choosing the class by its ``kind``."""
    data = _as_mapping(value)
    _check_version(data)
    kind = data.get("kind")
    cls = DOCUMENT_CLASSES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ResultDocumentError(
            "kind", f"{kind!r} is not a SAM 3 result document (known: {', '.join(DOCUMENT_CLASSES)})."
        )
    return cls.from_xcom(data)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- builder


def build_result(
    endpoint: Endpoint,
    output_json: Mapping[str, Any],
    *,
    reference: RequestReference,
    image: Mapping[str, Any] | None,
    completed_at: float,
    inference_seconds: float | None,
    stored: Mapping[str, str] | None = None,
    output_location: str | None = None,
) -> ResultDocument:
    """Turn fal's result body into the XCom document for ``endpoint.kind`` (parsed with the registry's model).

    ``image``: ``{source, width, height}`` of the input (the size turns boxes into pixels and decodes RLE).
    ``stored``: fal URL (or data URI) -> stored copy, for outputs already copied; the embedding's copy is keyed
    ``"embedding_b64"``. Raises ``ResultDocumentError`` (a ValueError) when fal's body does not match the model.
    """
    kind = _KIND_OF_ENDPOINT.get(endpoint.kind)
    if kind is None:
        raise ResultDocumentError("endpoint.kind", f"{endpoint.kind!r} has no result document; add it to results.py.")
    if not isinstance(output_json, Mapping):
        raise ResultDocumentError("output", f"must be fal's JSON object, got {type(output_json).__name__}.")
    try:
        output = endpoint.parse_output(dict(output_json))
    except ValidationError as error:
        raise ResultDocumentError(
            f"output.{_error_field(error)}",
            f"fal's result for {endpoint.endpoint_id} does not match its output model ({_first_error(error)}).",
        ) from None
    stored = dict(stored or {})
    header = {
        "endpoint_id": endpoint.endpoint_id,
        "request_id": reference.request_id,
        "cost_usd": endpoint.estimate_cost(frames=_frames(output)),
        "timings": _timings(reference.submitted_at, completed_at, inference_seconds),
        "image": _image_info(image),
        "output_location": output_location,
    }
    if kind == KIND_SEGMENTATION:
        return _segmentation(endpoint.kind, output, header, stored)
    if kind == KIND_EMBEDDING:
        return _embedding(output, header, stored)
    return _files_result(output, header, stored)


def _timings(submitted_at: float | None, completed_at: float, inference_seconds: float | None) -> Timings:
    wait = round(completed_at - submitted_at, 3) if submitted_at is not None else None
    return Timings(
        submitted_at=submitted_at, completed_at=completed_at, wait_seconds=wait, inference_seconds=inference_seconds
    )


def _image_info(image: Mapping[str, Any] | None) -> ImageInfo | None:
    if image is None:
        return None
    if not isinstance(image, Mapping):
        raise ResultDocumentError("image", f"must be a mapping {{source, width, height}}, got {type(image).__name__}.")
    source = image.get("source")
    if source is not None:
        source = _describe_source(str(source))
    return ImageInfo(source=source, width=image.get("width"), height=image.get("height"))


def _describe_source(source: str) -> str:
    """Data URIs are the image itself: keep only their media type and size, never the payload."""
    if source[:5].lower() != "data:":
        return source
    header = source[5:].split(",", 1)[0]
    return f"data:{header},<{len(source)} characters omitted>"


def _frames(output: Any) -> int | None:
    """Frame count when the output reveals it (billing per 16 frames needs it); None otherwise."""
    frames = getattr(output, "num_frames", None)
    if isinstance(frames, int):
        return frames
    rles = getattr(output, "frame_rles", None)
    return len(rles) if rles else None


def _segmentation(
    endpoint_kind: str, output: Any, header: dict[str, Any], stored: dict[str, str]
) -> SegmentationResult:
    image = header["image"]
    width = image.width if image else None
    height = image.height if image else None
    metadata = _metadata_by_index(output.metadata)
    masks: list[MaskEntry] = []
    rle_size = None
    skip = {"masks", "image"}
    if endpoint_kind == "image-rle":
        skip = set()
        if not isinstance(output.rle, File):
            skip = {"rle"}
            rle_size = [width, height] if width and height else None
            for index, rle in enumerate(output.rle_strings):
                masks.append(_mask_entry(index, None, output, metadata, width, height, stored, rle=rle))
        # An ``rle: File`` output keeps its RLE in a file: it is listed in ``files`` and ``masks`` stays empty.
    else:
        for index, file in enumerate(output.masks):
            w, h = width or file.width, height or file.height  # fal writes masks at the input size
            masks.append(_mask_entry(index, file, output, metadata, w, h, stored))
    preview = getattr(output, "image", None) if endpoint_kind != "image-rle" else None
    files, _ = _split_files(output, skip=skip)
    return SegmentationResult(
        **header,
        masks=masks,
        preview=_file_entry("image", preview, stored) if preview is not None else None,
        rle_size=rle_size,
        files=[_file_entry(field, f, stored) for field, f in files],
    )


def _metadata_by_index(metadata: list[Any] | None) -> dict[int, Any]:
    """fal's per-mask metadata keyed by mask index: its own ``index`` when given, else its position."""
    by_index: dict[int, Any] = {}
    for position, entry in enumerate(metadata or []):
        index = entry.index if entry.index is not None else position
        by_index.setdefault(index, entry)
    return by_index


def _mask_entry(
    index: int,
    file: Any,
    output: Any,
    metadata: dict[int, Any],
    width: int | None,
    height: int | None,
    stored: dict[str, str],
    *,
    rle: str | None = None,
) -> MaskEntry:
    meta = metadata.get(index)
    score = _at(output.scores, index)
    if score is None and meta is not None:
        score = meta.score
    box = _at(output.boxes, index)
    if box is None and meta is not None:
        box = meta.box
    url = file.url if file is not None else None
    return MaskEntry(
        index=index,
        url=_durable_url(url),
        stored_url=stored.get(url) if url else None,
        content_type=_content_type(file) if file is not None else None,
        score=score,
        box=list(box) if box is not None else None,
        pixel_box=_pixel_box(box, width, height),
        rle=rle,
    )


def _at(values: list[Any] | None, index: int) -> Any:
    return values[index] if values is not None and index < len(values) else None


def _pixel_box(box: Sequence[float] | None, width: int | None, height: int | None) -> list[float] | None:
    """Pixel corners of a normalized box; None when the box or image size is unknown or the box is malformed
    (a paid result is kept whole rather than failed over one odd box; ``box`` still shows what fal sent)."""
    if box is None or not width or not height:
        return None
    from airflow_provider_sam3.exceptions import InputValidationError
    from airflow_provider_sam3.media.boxes import cxcywh_to_xyxy

    try:
        corners = cxcywh_to_xyxy(box, width, height)
    except InputValidationError:
        return None
    return [round(v, 2) for v in corners]  # type: ignore[union-attr]  # 0.01 px; fal sends rounded fractions


def _durable_url(url: str | None) -> str | None:
    """fal's URL, except inline data URIs (sync_mode), which are the file itself and too big for XCom."""
    if url is None or url[:5].lower() == "data:":
        return None
    return url or None


def _content_type(file: Any) -> str | None:
    if file.content_type:
        return file.content_type
    url = file.url or ""
    if url[:5].lower() == "data:":
        return url[5:].split(",", 1)[0].split(";", 1)[0].strip().lower() or None
    return None


def _file_entry(field: str, file: Any, stored: dict[str, str]) -> FileEntry:
    url = file.url
    return FileEntry(
        field=field,
        url=_durable_url(url),
        stored_url=stored.get(url) if url else None,
        content_type=_content_type(file),
        file_name=file.file_name,
    )


def _embedding(output: Any, header: dict[str, Any], stored: dict[str, str]) -> EmbeddingResult:
    from airflow_provider_sam3.media.embedding import embedding_bytes

    data = embedding_bytes(output.embedding_b64)
    return EmbeddingResult(
        **header,
        stored_url=stored.get("embedding_b64"),
        byte_size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _files_result(output: Any, header: dict[str, Any], stored: dict[str, str]) -> FilesResult:
    files, data = _split_files(output)
    data_bytes = len(json.dumps(data, separators=(",", ":"))) if data is not None else 0
    return FilesResult(
        **header,
        files=[_file_entry(field, f, stored) for field, f in files],
        data=data,
        data_bytes=data_bytes,
    )


_MISSING = object()


def _split_files(
    output: BaseModel, *, skip: AbstractSet[str] = frozenset()
) -> tuple[list[tuple[str, File]], dict | None]:
    """Walk a parsed output: File objects (declared or file-like extras) with their paths, and the rest as JSON."""
    files: list[tuple[str, File]] = []
    rest = _walk(output, "", files, skip)
    return files, (rest if isinstance(rest, dict) and rest else None)


def _walk(value: Any, path: str, files: list[tuple[str, File]], skip: AbstractSet[str] = frozenset()) -> Any:
    if isinstance(value, File):
        files.append((path, value))
        return _MISSING
    if isinstance(value, BaseModel):
        items = {name: getattr(value, name) for name in type(value).model_fields}
        items.update(value.model_extra or {})
        return _walk_dict(items, path, files, skip)
    if isinstance(value, Mapping):
        if _looks_like_file(value):
            files.append((path, File.model_validate(value)))
            return _MISSING
        return _walk_dict(value, path, files, skip)
    if isinstance(value, (list, tuple)):
        kept = [_walk(item, f"{path}[{i}]", files) for i, item in enumerate(value)]
        kept = [item for item in kept if item is not _MISSING]
        return kept if kept or not value else _MISSING
    return value


def _walk_dict(items: Mapping[str, Any], path: str, files: list[tuple[str, File]], skip: AbstractSet[str]) -> Any:
    kept = {}
    for name, item in items.items():
        if name in skip or item is None:
            continue
        result = _walk(item, f"{path}.{name}" if path else str(name), files)
        if result is not _MISSING:
            kept[name] = result
    return kept if kept or not items else (_MISSING if path else kept)


def _looks_like_file(value: Mapping[str, Any]) -> bool:
    """A file fal added outside the declared model: a dict whose ``url`` is an http(s) URL or data URI."""
    url = value.get("url")
    return isinstance(url, str) and url[:8].lower().startswith(("http://", "https://", "data:"))


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
    # y_min stays None only for a one-number RLE (no run pairs), which fails here with a TypeError as it always has
    return (float(x_min), float(y_min), float(x_max), float(y_max))  # type: ignore[arg-type]


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
