"""Building a result document from fal's output: the endpoint's parsed output, the request reference and what is
known of the input image become a ``sam3.segmentation``, ``sam3.embedding`` or ``sam3.files`` document.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from airflow_provider_sam3.guards.numbers import finite_score, finite_tree, unit_box
from airflow_provider_sam3.models.document_fields import (
    KIND_EMBEDDING,
    KIND_SEGMENTATION,
    FileEntry,
    ImageInfo,
    MaskEntry,
    ResultDocumentError,
    Timings,
    error_field,
    first_error,
)
from airflow_provider_sam3.models.documents import (
    KIND_OF_ENDPOINT,
    EmbeddingResult,
    FilesResult,
    ResultDocument,
    SegmentationResult,
)
from airflow_provider_sam3.models.files import File

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = ["build_result"]

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
    kind = KIND_OF_ENDPOINT.get(endpoint.kind)
    if kind is None:
        raise ResultDocumentError("endpoint.kind", f"{endpoint.kind!r} has no result document; add it to results.py.")
    if not isinstance(output_json, Mapping):
        raise ResultDocumentError("output", f"must be fal's JSON object, got {type(output_json).__name__}.")
    try:
        output = endpoint.parse_output(dict(output_json))
    except ValidationError as error:
        raise ResultDocumentError(
            f"output.{error_field(error)}",
            f"fal's result for {endpoint.endpoint_id} does not match its output model ({first_error(error)}).",
        ) from None
    stored = dict(stored or {})
    notes: list[str] = []
    header = {
        "endpoint_id": endpoint.endpoint_id,
        "request_id": reference.request_id,
        "cost_usd": endpoint.estimate_cost(frames=_frames(output)),
        "timings": _timings(reference.submitted_at, completed_at, inference_seconds),
        "image": _image_info(image),
        "output_location": output_location,
        "notes": notes,  # filled by the builders below (a list: they append to it before the model is made)
    }
    if kind == KIND_SEGMENTATION:
        return _segmentation(endpoint.kind, output, header, stored)
    if kind == KIND_EMBEDDING:
        return _embedding(output, header, stored)
    return _files_result(output, header, stored)


def _timings(submitted_at: float | None, completed_at: float, inference_seconds: float | None) -> Timings:
    """The document's timings from epoch seconds: UTC moments to the millisecond, and the wait between them."""
    wait = round(completed_at - submitted_at, 3) if submitted_at is not None else None
    return Timings(
        submitted_at=_utc(submitted_at) if submitted_at is not None else None,
        completed_at=_utc(completed_at),
        wait_seconds=wait,
        inference_seconds=inference_seconds,
    )


def _utc(epoch_seconds: float) -> datetime:
    return datetime.fromtimestamp(round(epoch_seconds, 3), tz=timezone.utc)


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
                masks.append(
                    _mask_entry(index, None, output, metadata, (width, height), stored, header["notes"], rle=rle)
                )
        # An ``rle: File`` output keeps its RLE in a file: it is listed in ``files`` and ``masks`` stays empty.
    else:
        for index, file in enumerate(output.masks):
            size = (width or file.width, height or file.height)  # fal writes masks at the input size
            masks.append(_mask_entry(index, file, output, metadata, size, stored, header["notes"]))
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
    size: tuple[int | None, int | None],
    stored: dict[str, str],
    notes: list[str],
    *,
    rle: str | None = None,
) -> MaskEntry:
    """One mask's entry; its score and box pass ``guards.numbers`` (a NaN is stored as null, a box reaching
    outside the image is clamped to it, each noted in the document)."""
    meta = metadata.get(index)
    score = _at(output.scores, index)
    if score is None and meta is not None:
        score = meta.score
    box = _at(output.boxes, index)
    if box is None and meta is not None:
        box = meta.box
    box = unit_box(box, f"masks[{index}].box", notes)
    url = file.url if file is not None else None
    return MaskEntry(
        index=index,
        url=_durable_url(url),
        stored_url=stored.get(url) if url else None,
        content_type=_content_type(file) if file is not None else None,
        score=finite_score(score, f"masks[{index}].score", notes),
        box=box,
        pixel_box=_pixel_box(box, *size),
        rle=rle,
    )


def _at(values: list[Any] | None, index: int) -> Any:
    return values[index] if values is not None and index < len(values) else None


def _pixel_box(box: Sequence[float] | None, width: int | None, height: int | None) -> list[float] | None:
    """Pixel corners of a (checked, clamped) normalized box; None when the box or the image size is unknown."""
    if box is None or not width or not height:
        return None
    from airflow_provider_sam3.media.boxes import cxcywh_to_xyxy

    corners = cxcywh_to_xyxy(box, width, height)
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
    data = finite_tree(data, "data", header["notes"]) if data is not None else None
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
