"""Copy a result's outputs to the user's storage before fal's URLs expire, and point the document at the copies.

Layout under ``output_path / <request_id> /`` (stable names, so a retried task overwrites the same files)::

    mask_000.png, mask_001.png, ...   mask images (extension from the content type)
    preview.png                       the composited preview (image endpoint)
    <field>.<ext>                     other files by their output field: video.mp4, model_glb.glb,
                                      individual_glbs_000.glb, boundingbox_frames_zip.zip, ...
    embedding.bin                     embedding bytes (image/embed), exactly as fal sent them base64-decoded
    data.json                         a files result's metadata (dropped from XCom when over 64 KiB)
    result.json                       the returned document itself

Embeddings need an ``output_path``: the document only references the bytes, so without one they would be lost.
``require_output_path`` lets an operator refuse that before anything is submitted (and paid).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.results import (
    INLINE_DATA_LIMIT,
    EmbeddingResult,
    FileEntry,
    FilesResult,
    ResultDocument,
    ResultDocumentError,
    SegmentationResult,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_sam3.endpoints import Endpoint

__all__ = [
    "file_entries",
    "DATA_FILE",
    "EMBEDDING_FILE",
    "LOCAL_PROTOCOLS",
    "MAX_OUTPUT_FILES",
    "OUTPUT_PATH_KINDS",
    "RESULT_FILE",
    "copy_outputs",
    "output_urls",
    "request_folder",
    "require_output_path",
    "resolve_output_path",
]

LOCAL_PROTOCOLS = ("", "file", "local")
RESULT_FILE = "result.json"
DATA_FILE = "data.json"
EMBEDDING_FILE = "embedding.bin"
_RESERVED = {RESULT_FILE, DATA_FILE, EMBEDDING_FILE}
_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "model/gltf-binary": ".glb",
    "model/gltf+json": ".gltf",
    "application/zip": ".zip",
    "application/x-zip-compressed": ".zip",
    "application/json": ".json",
    "application/x-npy": ".npy",
    "text/plain": ".txt",
}
_SUFFIXES = frozenset(_EXTENSIONS.values()) | {".jpeg", ".ply", ".obj", ".npz", ".bin", ".csv"}
"""The only extensions a copied file may get: from the content type, else fal's file name or URL if listed here,
else ``.bin``. A result cannot choose ``.html``, ``.sh`` or ``.py`` for a file written to the user's storage."""
MAX_OUTPUT_FILES = 1_000
"""Files copied for one request at most (each within the connection's ``max_output_bytes``)."""
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
OUTPUT_PATH_KINDS = (
    "an absolute path, a file:// or object-store URL (s3://conn_id@bucket/prefix), or an ObjectStoragePath"
)


def resolve_output_path(output_path: Any) -> ObjectStoragePath | None:
    """``output_path`` as an ObjectStoragePath; plain absolute paths become ``file://`` URLs. None stays None.

    Relative paths are refused: each worker has its own working directory, so a retry would write elsewhere.
    """
    if output_path is None:
        return None
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_path, ObjectStoragePath):
        return output_path
    if isinstance(output_path, os.PathLike):
        output_path = os.fspath(output_path)
    if not isinstance(output_path, str) or not output_path.strip():
        raise InputValidationError("output_path", f"got {output_path!r}.", allowed=OUTPUT_PATH_KINDS)
    text = os.path.expanduser(output_path.strip())
    if "://" in text:
        return ObjectStoragePath(text)
    if not os.path.isabs(text):
        raise InputValidationError(
            "output_path",
            f"{output_path!r} is relative; workers differ in working directory, so give an absolute path or a URL.",
            allowed=OUTPUT_PATH_KINDS,
        )
    return ObjectStoragePath("file://" + text)


def require_output_path(endpoint: Endpoint, output_path: Any) -> None:
    """Refuse, before submitting, an embedding request with nowhere to keep its bytes (XCom never holds them)."""
    if endpoint.kind == "embed" and output_path is None:
        raise InputValidationError(
            "output_path",
            f"{endpoint.endpoint_id} returns an embedding, which is written to storage and referenced from XCom; "
            "give output_path (e.g. 's3://conn_id@bucket/embeddings' or '/data/embeddings').",
        )
    resolve_output_path(output_path)


def copy_outputs(
    document: ResultDocument,
    output_path: Any,
    *,
    download: Callable[[str], bytes],
    output_json: Mapping[str, Any] | None = None,
    stream: Callable[[str, Callable[[bytes], Any]], Any] | None = None,
    keep_existing_document: bool = False,
) -> ResultDocument:
    """Copy every output of ``document`` under ``output_path/<request_id>/`` and return the updated copy.

    ``download(url) -> bytes`` fetches fal's URLs (``FalHook.download``); inline data URIs (sync_mode) are decoded
    here, read from ``output_json`` (fal's result body), which the document does not keep. ``output_json`` is also
    required for embeddings. With ``output_path=None`` nothing is copied (embeddings: an error).
    ``stream(url, write)`` (``FalHook.download_to``), when given, is used instead of ``download`` so that a file
    goes to storage chunk by chunk rather than through memory. ``keep_existing_document``: a ``result.json``
    already in the folder stays (a result from the cache shared by several images of one batch: the first one's).

    Everything is written under ``output_path/<request_id>/`` and nowhere else: the request id must be one fal
    issues (no ``/``, ``..``, absolute paths...), and the folder is checked to be inside ``output_path`` after
    normalisation.
    """
    base_path = resolve_output_path(output_path)
    if base_path is None:
        if isinstance(document, EmbeddingResult):
            raise InputValidationError(
                "output_path",
                "is needed to keep an embedding: its bytes are never put in XCom; give output_path to the operator.",
            )
        return document
    folder = request_folder(base_path, document.request_id, endpoint_id=getattr(document, "endpoint_id", None))
    file_entries(document)  # a result naming thousands of files is refused before anything is written
    if getattr(folder, "protocol", "") in LOCAL_PROTOCOLS:
        folder.mkdir(parents=True, exist_ok=True)
    copy = document.model_copy(deep=True)
    copy.output_location = str(folder)
    writer = _Writer(folder, download, output_json, stream)
    _copy_files_of(copy, writer, output_json)
    if not (keep_existing_document and writer.target(RESULT_FILE).exists()):
        writer.write(RESULT_FILE, copy.model_dump_json(indent=2).encode("utf-8"))
    return copy


def _copy_files_of(copy: ResultDocument, writer: _Writer, output_json: Mapping[str, Any] | None) -> None:
    """Copy each file ``copy`` names (masks, preview, other files, embedding, large data) and point it at its copy."""
    if isinstance(copy, SegmentationResult):
        for mask in copy.masks:
            if mask.rle is None:
                mask.stored_url = writer.copy(
                    f"mask_{mask.index:03d}",
                    f"masks[{mask.index}]",
                    mask.url,
                    mask.content_type,
                    None,
                    mask.stored_url,
                )
        if copy.preview is not None:
            writer.copy_entry(copy.preview, "preview")
        for entry in copy.files:
            writer.copy_entry(entry, _field_name(entry.field))
    elif isinstance(copy, EmbeddingResult):
        copy.stored_url = writer.write(EMBEDDING_FILE, _embedding_bytes(copy, output_json))
    elif isinstance(copy, FilesResult):
        for entry in copy.files:
            writer.copy_entry(entry, _field_name(entry.field))
        if copy.data is not None:
            text = json.dumps(copy.data, separators=(",", ":")).encode("utf-8")
            copy.data_stored_url = writer.write(DATA_FILE, text)
            if len(text) > INLINE_DATA_LIMIT:
                copy.data = None


def request_folder(base_path: Any, request_id: Any, *, endpoint_id: str | None = None) -> Any:
    """``base_path / request_id``, refused (``FalUntrustedUrlError``, nothing written) unless the id is a fal request
    id and the folder stays inside ``base_path`` once normalised."""
    from airflow_provider_sam3.exceptions import FalUntrustedUrlError
    from airflow_provider_sam3.hooks.trust import request_id_problem

    problem = request_id_problem(request_id)
    if problem is None:
        folder = base_path / request_id
        base = os.path.normpath(_path_text(base_path))
        inside = os.path.normpath(_path_text(folder))
        if os.path.dirname(inside) == base and os.path.basename(inside) == request_id:
            return folder
        problem = f"{request_id!r} does not stay inside output_path"
    raise FalUntrustedUrlError(
        f"the result's request id cannot name a folder under output_path: {problem}. Nothing was written; check "
        "where the request reference came from",
        endpoint_id=endpoint_id,
    )


def _path_text(path: Any) -> str:
    return str(path.path) if hasattr(path, "path") else str(path)


def file_entries(document: ResultDocument) -> list[Any]:
    """The file-bearing entries of ``document``, refused when a result names more than ``MAX_OUTPUT_FILES``."""
    entries: list[Any] = []
    if isinstance(document, SegmentationResult):
        entries = [mask for mask in document.masks if mask.rle is None] + [document.preview] + list(document.files)
    elif isinstance(document, FilesResult):
        entries = list(document.files)
    entries = [entry for entry in entries if entry is not None]
    if len(entries) > MAX_OUTPUT_FILES:
        from airflow_provider_sam3.exceptions import FalOutputRefusedError

        raise FalOutputRefusedError(
            f"the result names {len(entries):,} output files, more than the {MAX_OUTPUT_FILES:,} the provider copies "
            "for one request (a SAM 3 result has a few dozen at most); nothing was written",
            endpoint_id=getattr(document, "endpoint_id", None),
            request_id=getattr(document, "request_id", None),
        )
    return entries


def output_urls(document: ResultDocument) -> list[str]:
    """The fal URLs ``copy_outputs`` will download for ``document`` (inline data URIs need no download), so a
    caller can fetch them all concurrently first."""
    entries = file_entries(document)
    urls = [entry.url for entry in entries if entry.url and not entry.url.startswith("data:")]
    return list(dict.fromkeys(urls))


class _Writer:
    """Writes named files into one request's folder, fetching or decoding each source once."""

    def __init__(
        self,
        folder: Any,
        download: Callable[[str], bytes],
        output_json: Mapping[str, Any] | None,
        stream: Callable[[str, Callable[[bytes], Any]], Any] | None = None,
    ) -> None:
        self.folder = folder
        self.download = download
        self.output_json = output_json
        self.stream = stream

    def target(self, name: str) -> Any:
        if not _SAFE_NAME.match(name) or ".." in name:
            raise ResultDocumentError("file name", f"{name!r} is not a plain file name; nothing was written.")
        return self.folder / name

    def write(self, name: str, data: bytes) -> str:
        target = self.target(name)
        target.write_bytes(data)
        return str(target)

    def stream_to(self, name: str, source: str) -> str:
        """Fetch ``source`` straight into the file (chunk by chunk); a partial file is removed on failure."""
        stream = self.stream
        assert stream is not None  # only called when a stream function was given
        target = self.target(name)
        try:
            with target.open("wb") as handle:
                stream(source, handle.write)
        except BaseException:
            try:
                target.unlink()
            except (OSError, NotImplementedError, AttributeError):
                pass
            raise
        return str(target)

    def copy_entry(self, entry: FileEntry, stem: str) -> None:
        entry.stored_url = self.copy(
            stem, entry.field, entry.url, entry.content_type, entry.file_name, entry.stored_url
        )

    def copy(
        self,
        stem: str,
        field: str,
        url: str | None,
        content_type: str | None,
        file_name: str | None,
        stored_url: str | None,
    ) -> str:
        source = url or _lookup_url(self.output_json, field)
        name = _file_name(stem, content_type, file_name, source)
        if source is None:
            if stored_url and stored_url == str(self.folder / name):
                return stored_url  # copied by an earlier run; the inline original is no longer at hand
            raise ResultDocumentError(
                field,
                "was returned inline (sync_mode data URI), which the document does not keep; pass output_json "
                "(fal's result body) to copy_outputs.",
            )
        if self.stream is not None and source[:5].lower() != "data:":
            return self.stream_to(name, source)
        return self.write(name, self._fetch(source, field))

    def _fetch(self, source: str, field: str) -> bytes:
        if source[:5].lower() == "data:":
            from airflow_provider_sam3.media.inputs import parse_data_uri

            return parse_data_uri(source, field=field)[1]
        data = self.download(source)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ResultDocumentError(field, f"download returned {type(data).__name__}, not bytes.")
        return bytes(data)


def _lookup_url(output_json: Mapping[str, Any] | None, field: str) -> str | None:
    """The ``url`` at ``field`` (``masks[2]``, ``metadata.mesh``, ``image``) in fal's result body, if any."""
    node: Any = output_json
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        if index:
            node = node[int(index)] if isinstance(node, list) and int(index) < len(node) else None
        else:
            node = node.get(name) if isinstance(node, Mapping) else None
        if node is None:
            return None
    url = node.get("url") if isinstance(node, Mapping) else None
    return url if isinstance(url, str) and url else None


def _field_name(field: str) -> str:
    """A stable file stem from an output field: ``individual_glbs[1]`` -> ``individual_glbs_001``."""
    stem = re.sub(r"\[(\d+)\]", lambda m: f"_{int(m.group(1)):03d}", field)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "file"
    return stem


def _file_name(stem: str, content_type: str | None, file_name: str | None, url: str | None) -> str:
    name = stem + _extension(content_type, file_name, url)
    return "file_" + name if name in _RESERVED else name


def _extension(content_type: str | None, file_name: str | None, url: str | None) -> str:
    """From the content type; else fal's file name or URL suffix; else ``.bin``."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime in _EXTENSIONS:
        return _EXTENSIONS[mime]
    for candidate in (file_name, (url or "").split("?", 1)[0] if not (url or "").startswith("data:") else None):
        suffix = os.path.splitext(candidate or "")[1].lower()
        if suffix in _SUFFIXES:
            return suffix
    return ".bin"


def _embedding_bytes(document: EmbeddingResult, output_json: Mapping[str, Any] | None) -> bytes:
    from airflow_provider_sam3.media.embedding import embedding_bytes

    if not output_json or "embedding_b64" not in output_json:
        raise ResultDocumentError(
            "embedding_b64",
            "is needed to write the embedding; pass output_json (fal's result body) to copy_outputs.",
        )
    data = embedding_bytes(output_json["embedding_b64"])
    if len(data) != document.byte_size or hashlib.sha256(data).hexdigest() != document.sha256:
        raise ResultDocumentError(
            "embedding_b64", "does not match the document's sha256; pass the output_json of the same request."
        )
    return data
