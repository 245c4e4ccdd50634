"""The three result documents and their readers: ``sam3.segmentation`` (masks, scores, boxes; decoded masks on
demand), ``sam3.embedding`` (where the bytes are; the array on demand) and ``sam3.files`` (video, RLE tracks, 3D).

A reader takes the XCom value as it arrives (dict, JSON text or model) and refuses a version it does not know.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union, overload

from pydantic import Field, field_validator

from airflow_provider_sam3.models.document_fields import (
    INLINE_DATA_LIMIT,
    KIND_EMBEDDING,
    KIND_FILES,
    KIND_SEGMENTATION,
    MAX_MASKS,
    MAX_STORED_FILE_BYTES,
    DocumentHeader,
    Fetch,
    FileEntry,
    MaskEntry,
    ResultDocumentError,
    as_mapping,
    check_document_pixels,
    check_version,
    rle_area,
    rle_box,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "DOCUMENT_CLASSES",
    "EmbeddingResult",
    "FilesResult",
    "KIND_OF_ENDPOINT",
    "ResultDocument",
    "SegmentationResult",
    "result_from_xcom",
]

# ---------------------------------------------------------------------------------------------- segmentation


class SegmentationResult(DocumentHeader):
    """Result of ``image`` and ``image-rle``: one entry per mask, the preview, and any other output files.

    Readers follow one convention: what is read from the document alone, without arguments or I/O, is a property
    returning plain JSON (``scores``, ``pixel_boxes``, ``areas``, ``is_rle``), so a task can return it as is; what
    takes arguments, reads files or decodes masks is a method (``mask_arrays()``, ``to_rows()``).

    RLE documents (image-rle) carry each mask's RLE string inline (fal's Kaggle-style runs, about 12 bytes per run)
    and ``rle_size`` = ``[width, height]`` needed to decode them; image documents reference mask PNGs.
    """

    document_kind: ClassVar[str] = KIND_SEGMENTATION

    kind: Literal["sam3.segmentation"] = KIND_SEGMENTATION
    masks: list[MaskEntry] = Field(default_factory=list, max_length=MAX_MASKS)
    preview: FileEntry | None = None
    rle_size: list[int] | None = Field(default=None, min_length=2, max_length=2)
    files: list[FileEntry] = Field(default_factory=list)

    @field_validator("rle_size")
    @classmethod
    def _an_image_size(cls, value: list[int] | None) -> list[int] | None:
        if value is not None:
            check_document_pixels(value[0], value[1])
        return value

    @property
    def is_rle(self) -> bool:
        return self.rle_size is not None or any(m.rle is not None for m in self.masks)

    @property
    def scores(self) -> list[float | None]:
        """One score per mask (null where fal sent none; ask for ``include_scores=True``)."""
        return [m.score for m in self.masks]

    @property
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

        expected = size or (self.image.size if self.image else None)  # fal writes masks at the input's size
        return [
            mask_from_image(self._mask_bytes(m, fetch, read), field=f"masks[{m.index}]", size=expected)
            for m in self.masks
        ]

    @property
    def areas(self) -> list[int | None]:
        """Pixel count per mask from the RLE runs (checked, not decoded); None for image documents (see
        ``to_rows``)."""
        if not self.is_rle:
            return [None] * len(self.masks)
        size = self._rle_dims(None, required=False)
        return [rle_area(m.rle, size, f"masks[{m.index}].rle") for m in self.masks]

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
                area = rle_area(mask.rle, rle_dims, f"masks[{mask.index}].rle")
                if box is None and rle_dims is not None:
                    box = rle_box(mask.rle or "", rle_dims, f"masks[{mask.index}].rle")
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
        try:
            check_document_pixels(int(width), int(height))
        except (TypeError, ValueError) as error:
            raise ResultDocumentError("size", str(error)) from None
        return int(width), int(height)

    def _mask_bytes(self, mask: MaskEntry, fetch: Fetch | None, read: Fetch | None) -> bytes:
        field = f"masks[{mask.index}]"
        if mask.stored_url and (read is not None or fetch is None or _local(mask.stored_url)):
            return self.read_stored(mask.stored_url, f"{field}.stored_url", read)
        if mask.url and fetch is not None:
            return fetch(mask.url)
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


class EmbeddingResult(DocumentHeader):
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
        from airflow_provider_sam3.exceptions import InputValidationError
        from airflow_provider_sam3.guards.files import local_path, read_regular_file

        if self.byte_size > MAX_STORED_FILE_BYTES:  # checked before anything is read
            raise ResultDocumentError(
                "byte_size",
                f"{self.byte_size:,} bytes is more than an embedding reader reads ({MAX_STORED_FILE_BYTES:,}).",
            )
        if source is None:
            if not self.stored_url:
                raise ResultDocumentError(
                    "stored_url",
                    "is null: the embedding was not written anywhere; give the operator an output_path.",
                )
            if not _local(self.stored_url):
                raise ResultDocumentError(
                    "stored_url",
                    f"{self.stored_url!r} is not a local file; pass load_bytes(ObjectStoragePath(doc.stored_url)).",
                )
            data = self.read_stored(self.stored_url, "stored_url")
        elif callable(getattr(source, "stat", None)) or isinstance(source, (str, os.PathLike)):
            location = local_path(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else source
            if location is None:
                raise ResultDocumentError("source", f"{source!r} is not a local file; pass an ObjectStoragePath.")
            try:  # the caller chose this file: a regular file no larger than byte_size says the document
                data = read_regular_file(location, "source", self.byte_size, setting="byte_size")
            except InputValidationError as error:
                raise ResultDocumentError("source", str(error).removeprefix("source: ")) from None
        elif callable(getattr(source, "read_bytes", None)):
            data = bytes(source.read_bytes())
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


class FilesResult(DocumentHeader):
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
        raw = self.read_stored(self.data_stored_url, "data_stored_url", read)
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as error:
            raise ResultDocumentError("data_stored_url", f"the stored data is not readable JSON ({error}).") from None
        if not isinstance(data, dict):
            raise ResultDocumentError("data_stored_url", f"the stored data is a {type(data).__name__}, not an object.")
        return data


ResultDocument = Union[SegmentationResult, EmbeddingResult, FilesResult]
DOCUMENT_CLASSES: dict[str, type[DocumentHeader]] = {
    KIND_SEGMENTATION: SegmentationResult,
    KIND_EMBEDDING: EmbeddingResult,
    KIND_FILES: FilesResult,
}
KIND_OF_ENDPOINT = {
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


def _local(location: str) -> bool:
    from airflow_provider_sam3.guards.files import local_path

    return local_path(location) is not None


def result_from_xcom(value: Any) -> ResultDocument:
    """Read any result document (dict, JSON text or model), choosing the class by its ``kind``."""
    data = as_mapping(value)
    check_version(data)
    kind = data.get("kind")
    cls = DOCUMENT_CLASSES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ResultDocumentError(
            "kind", f"{kind!r} is not a SAM 3 result document (known: {', '.join(DOCUMENT_CLASSES)})."
        )
    return cls.from_xcom(data)  # type: ignore[return-value]
