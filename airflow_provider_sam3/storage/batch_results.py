"""Reading a batch's results: its manifest row by row, each image's result document, and one table for all.

``BatchResults.from_xcom(summary)`` takes what a ``Sam3BatchOperator`` (or ``Sam3MergeManifestsOperator``) returned;
iterating it reads ``manifest.jsonl`` one line at a time, so 100,000 rows take the memory of one. Each row
(``BatchRow``) has the manifest's fields; ``row.document()`` reads that image's ``result.json`` into the same
``SegmentationResult`` (or embedding, or files) a single-image task returns, with its readers (``scores``,
``pixel_boxes``, ``mask_arrays()``, ``to_rows()``). ``BatchResults.to_rows()`` is one row per mask of every image
that succeeded, the single-image columns plus the image's manifest ``index``.

The manifest and the files it names are read as untrusted bytes: a line is at most ``MAX_ROW_CHARS`` long and
``guards.structure`` bounds its nesting; a row's ``output_location`` must lie inside ``root`` (the manifest's
folder, or for a merged manifest its run folder), and ``result.json`` is read through ``guards.files``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from airflow_provider_sam3.guards.files import confined, local_path, open_regular_file, read_regular_file
from airflow_provider_sam3.guards.structure import check_structure
from airflow_provider_sam3.models.results import ResultDocument, ResultDocumentError, result_from_xcom
from airflow_provider_sam3.storage.outputs import RESULT_FILE, resolve_output_path

__all__ = ["MAX_MANIFEST_BYTES", "MAX_RESULT_BYTES", "MAX_ROW_CHARS", "BatchResults", "BatchRow", "ManifestPage"]

MAX_ROW_CHARS = 4 * 1024 * 1024
"""The longest manifest line read (a row with 32 inline RLE masks of a large photo is a few hundred KB)."""
MAX_RESULT_BYTES = 64 * 1024 * 1024
"""The largest ``result.json`` read."""
MAX_MANIFEST_BYTES = 1 << 40
"""The largest manifest read (it is streamed: this only refuses what cannot be one)."""


class BatchRow(BaseModel):
    """One image of a batch, as its manifest row says: where it came from, what happened, where its result is."""

    model_config = ConfigDict(extra="allow", frozen=True)

    _root: Any = PrivateAttr(default=None)  # the folder its outputs must lie in, set by BatchResults

    index: int
    source: str
    status: str
    request_id: str | None = None
    submissions: int = 0
    error: str | None = None
    error_class: str | None = None
    output_location: str | None = None
    cost_usd: float | None = None
    image: dict[str, Any] | None = None
    masks: list[dict[str, Any]] | None = None
    scores: list[float | bool | None] | None = None
    repeat_of: int | None = None
    shard: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def document(self, *, root: Any = None) -> ResultDocument:
        """This image's result document (``result.json`` in its ``output_location``), as a single-image task's.

        Everything it names must lie inside ``root``: rows from ``BatchResults`` carry the batch's own; a row built
        by hand needs ``root=``. The folder, ``result.json`` itself (links resolved) and the document's own
        ``output_location`` (where its readers read masks) are all checked before use."""
        if not self.succeeded or not self.output_location:
            raise ResultDocumentError(
                "status",
                f"images[{self.index}] ({self.source}) is {self.status!r}, so it has no result document"
                + (f": {self.error}" if self.error else "")
                + "; iterate BatchResults.succeeded() to read only the images that have one.",
            )
        root = root if root is not None else self._root
        if root is None:
            raise ResultDocumentError(
                "root", "is needed for a row read by hand: pass the batch's folder (document(root=...))."
            )
        where = f"images[{self.index}].output_location"
        folder = resolve_output_path(self.output_location)
        assert folder is not None  # output_location is a non-empty text here
        confined(str(folder), str(root), where)
        path = folder / RESULT_FILE
        confined(str(path), str(root), f"{where}/{RESULT_FILE}")  # a result.json that links elsewhere is refused
        local = local_path(str(path))
        data = read_regular_file(local or path, f"{where}/{RESULT_FILE}", MAX_RESULT_BYTES, setting=None)
        document = result_from_xcom(_parsed(data.decode("utf-8", errors="replace"), f"{where}/{RESULT_FILE}"))
        if document.output_location:  # the folder its readers read masks from
            confined(str(document.output_location), str(root), f"{where}/{RESULT_FILE}: output_location")
        return document


class ManifestPage(BaseModel):
    """One page of a manifest: its rows with the byte offset of each line (``BatchResults.row_at`` reads one
    again without reading the lines before it), how many rows matched the filter and rows by status."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rows: list[tuple[int, BatchRow]]
    matched: int
    counts: dict[str, int]


_STATUS = re.compile(r'(?<!\\)"status":\s*"([a-z_]{1,32})"')
"""A manifest line's status without parsing the line (a ``"status"`` inside a string is escaped, so not matched)."""


class BatchResults:
    """A batch's results, read from its manifest (see the module docstring).

    :param manifest: the manifest's location: a path, a ``file://`` or object-store URL, or an ObjectStoragePath.
    :param root: the folder every row's outputs must lie in; by default the manifest's folder, or for a merged
        manifest (rows with a ``shard``) the run folder above it, where the shards' folders are. Pass the shards'
        ``output_path`` when they wrote elsewhere.
    """

    def __init__(self, manifest: Any, *, root: Any = None) -> None:
        located = resolve_output_path(manifest)
        if located is None:
            raise ResultDocumentError("manifest", "is None; pass the manifest's location (the summary's 'manifest').")
        self.manifest = located
        self.root = resolve_output_path(root) if root is not None else None

    @classmethod
    def from_xcom(cls, summary: Any, *, root: Any = None) -> BatchResults:
        """The results of the batch (or merged shards) whose XCom summary this is (a dict or its JSON text)."""
        if isinstance(summary, (str, bytes)):
            try:
                summary = json.loads(summary)
            except ValueError as error:
                raise ResultDocumentError("summary", f"is text but not JSON ({error}); pass the XCom value.") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("manifest"), str):
            raise ResultDocumentError(
                "summary",
                "has no 'manifest'; pass what a Sam3BatchOperator or Sam3MergeManifestsOperator returned "
                "(a single-image task's document is read with result_from_xcom()).",
            )
        return cls(summary["manifest"], root=root)

    def __iter__(self) -> Iterator[BatchRow]:
        """Every row, in the manifest's order (one line in memory at a time)."""
        with self._open() as handle:
            for number, line in _lines(handle):
                yield self._rooted(_row(line, number))

    def succeeded(self) -> Iterator[BatchRow]:
        return (row for row in self if row.succeeded)

    def failed(self) -> Iterator[BatchRow]:
        """Every image without a result (``failed``, ``invalid``, or left unfinished by a stopped batch)."""
        return (row for row in self if not row.succeeded)

    def documents(self) -> Iterator[tuple[BatchRow, ResultDocument]]:
        """Each succeeded row with its result document."""
        for row in self.succeeded():
            yield row, row.document(root=self.root)

    def to_rows(self, label: str | None = None, *, with_area: bool = False) -> Iterator[dict[str, Any]]:
        """One dict per mask of every image that succeeded: ``index`` (the image's row in the manifest) and the
        columns of ``SegmentationResult.to_rows`` (``with_area`` reads the mask images, as it does there)."""
        for row, document in self.documents():
            to_rows = getattr(document, "to_rows", None)
            if to_rows is None:
                raise ResultDocumentError(
                    "kind", f"images[{row.index}] holds a {document.kind!r} document, which has no masks to list."
                )
            for mask_row in to_rows(label, with_area=with_area):
                yield {"index": row.index, **mask_row}

    def page(self, offset: int, limit: int, status: str | None = None) -> ManifestPage:
        """Rows ``offset`` to ``offset + limit`` of those whose status is ``status`` (all when None), streaming
        the manifest once: only the page's rows are parsed, so any page of 100,000 rows costs one pass and the
        memory of one page."""
        rows: list[tuple[int, BatchRow]] = []
        counts: dict[str, int] = {}
        matched = 0
        with self._open_binary() as handle:
            for position, number, line in _binary_lines(handle):
                found = _STATUS.search(line[:4096])
                row_status = found.group(1) if found else "unknown"
                counts[row_status] = counts.get(row_status, 0) + 1
                if status is not None and row_status != status:
                    continue
                if offset <= matched < offset + limit:
                    rows.append((position, self._rooted(_row(line, number))))
                matched += 1
        return ManifestPage(rows=rows, matched=matched, counts=counts)

    def row_at(self, position: int, index: int) -> BatchRow:
        """The row of image ``index`` whose line starts at byte ``position`` (from ``page``); a position that is
        not the start of that row's line is refused."""
        with self._open_binary() as handle:
            if position < 0 or position >= handle.size:
                raise ResultDocumentError("position", f"{position} is not inside the manifest.")
            handle.file.seek(max(position - 1, 0))
            if position and handle.file.read(1) != b"\n":
                raise ResultDocumentError("position", f"{position} is not the start of a manifest line.")
            line = handle.file.readline(MAX_ROW_CHARS + 1)
        row = self._rooted(_row(line.decode("utf-8", errors="replace"), 0))
        if row.index != index:
            raise ResultDocumentError("position", f"the line at {position} is image {row.index}, not {index}.")
        return row

    def outputs_root(self) -> Any:
        """The folder every row's outputs must lie in (``root``, or what the manifest's first row implies)."""
        if self.root is None:
            next(iter(self), None)
        return self.root if self.root is not None else self.manifest.parent

    def raw_chunks(self, size: int = 256 * 1024) -> Iterator[bytes]:
        """The manifest's bytes as stored, ``size`` at a time (to download it whole without holding it)."""
        with self._open_binary() as handle:
            while chunk := handle.file.read(size):
                yield chunk

    def _rooted(self, row: BatchRow) -> BatchRow:
        """``row`` bound to the folder its outputs must lie in (by default it depends on whether the manifest is a
        merged one, which its first row tells)."""
        if self.root is None:
            folder = self.manifest.parent
            self.root = folder.parent if row.shard is not None else folder
        row._root = self.root
        return row

    @contextmanager
    def _open_binary(self) -> Iterator[Any]:
        """The manifest opened through ``guards.files``: a regular file only (a FIFO or a device put in its place is
        refused, never waited on)."""
        local = local_path(str(self.manifest))
        with open_regular_file(local or self.manifest, "manifest", MAX_MANIFEST_BYTES, setting=None) as handle:
            yield handle

    @contextmanager
    def _open(self) -> Iterator[Any]:
        """The manifest as text (bytes that are not UTF-8 are replaced, not fatal)."""
        with self._open_binary() as handle:
            yield io.TextIOWrapper(handle.file, encoding="utf-8", errors="replace")


def _lines(handle: Any) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of the manifest's non-empty lines, each at most ``MAX_ROW_CHARS`` long (a longer one
    is refused, not read)."""
    number = 0
    while True:
        line = handle.readline(MAX_ROW_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_ROW_CHARS and not line.endswith("\n"):
            raise ResultDocumentError(
                f"manifest line {number}", f"is longer than {MAX_ROW_CHARS} characters; this is not a batch manifest."
            )
        if line.strip():
            yield number, line


def _binary_lines(handle: Any) -> Iterator[tuple[int, int, str]]:
    """``(byte offset, line number, line)`` of the non-empty lines, each at most ``MAX_ROW_CHARS`` bytes."""
    position = number = 0
    while True:
        raw = handle.file.readline(MAX_ROW_CHARS + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_ROW_CHARS and not raw.endswith(b"\n"):
            raise ResultDocumentError(
                f"manifest line {number}", f"is longer than {MAX_ROW_CHARS} bytes; this is not a batch manifest."
            )
        if raw.strip():
            yield position, number, raw.decode("utf-8", errors="replace")
        position += len(raw)


def _parsed(text: str, where: str) -> Any:
    """JSON read from storage, its nesting and size bounded before anything walks it."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ResultDocumentError(
            where, f"is not readable JSON ({type(error).__name__}); the file is damaged."
        ) from None
    check_structure(data, where)
    return data


def _row(line: str, number: int) -> BatchRow:
    where = f"manifest line {number}"
    data = _parsed(line, where)
    if not isinstance(data, dict):
        raise ResultDocumentError(where, f"is a JSON {type(data).__name__}, not a manifest row.")
    try:
        return BatchRow.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "row"
        raise ResultDocumentError(f"{where}.{field}", f"{first.get('msg')}; the manifest is damaged.") from None
