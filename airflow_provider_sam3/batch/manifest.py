"""Where a batch task writes, and its manifest: one JSON row per input row, in input order, streamed.

Everything one batch task writes lives in its own folder, ``<output_path>/<dag_id>/<run_id>/<task_id>/`` (plus
``<map_index>/`` for a mapped task), so any number of batches, mapped or scheduled, can share an ``output_path``.
Rows of images with a result are written as part files under ``<folder>/_manifest/`` after each round (each part
sorted by input position), so a crash between rounds loses nothing. The final ``<folder>/manifest.jsonl`` is a
k-way merge of the parts with the other rows, written row by row: memory does not grow with the number of images
(parts are first merged ``MERGE_FAN_IN`` at a time when there are more, so open files stay bounded too).
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow_provider_sam3.models.batch import BatchEntry, failure_row, repeat_row

__all__ = [
    "MANIFEST_FILE",
    "MERGE_FAN_IN",
    "PARTS_FOLDER",
    "atomic_writer",
    "batch_folder",
    "is_local",
    "merge_manifests",
    "remove_parts",
    "write_manifest",
    "write_part",
]

MANIFEST_FILE = "manifest.jsonl"
PARTS_FOLDER = "_manifest"
MERGE_FAN_IN = 64
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._=-]")


def batch_folder(output_base: Any, dag_id: str, run_id: str, task_id: str, map_index: int | None) -> Any:
    """Where one batch task writes: ``<output_base>/<dag_id>/<run_id>/<task_id>[/<map_index>]``.

    Characters outside ``A-Z a-z 0-9 . _ = -`` become ``_`` (``scheduled__2026-11-30T00:00:00+00:00`` ->
    ``scheduled__2026-11-30T00_00_00_00_00``), so every store and shell takes the path as it is.
    """

    def safe(part: str) -> str:
        text = _UNSAFE_IN_NAME.sub("_", str(part))
        if text != str(part) or text in ("", ".", ".."):  # distinct ids stay distinct folders: a:b vs a_b
            text = f"{text}-{hashlib.sha256(str(part).encode()).hexdigest()[:8]}"
        return text

    folder = output_base / safe(dag_id) / safe(run_id) / safe(task_id)
    return folder / str(map_index) if map_index is not None and map_index >= 0 else folder


def write_part(folder: Any, cycle: int, rows: list[dict[str, Any]]) -> None:
    """This round's rows, sorted by input position, written before the entries are marked done (a crash in
    between rewrites the part)."""
    if not rows:
        return
    parts = folder / PARTS_FOLDER
    if is_local(parts):
        parts.mkdir(parents=True, exist_ok=True)
    # A unique name: a process that crashed after writing a part and before saving its cycle never has its rows
    # overwritten by the next one (the manifest takes each request's row once, whichever part holds it).
    name = f"part-{cycle:06d}-{uuid.uuid4().hex[:8]}.jsonl"
    with atomic_writer(parts / name) as out:
        for row in sorted(rows, key=lambda row: row["index"]):
            out.write(json.dumps(row) + "\n")


def write_manifest(
    folder: Any, entries: Iterable[BatchEntry], *, keep_parts: bool = False, stopped: str | None = None
) -> Any:
    """``<folder>/manifest.jsonl``: one row per input row in input order (``entries`` in that order); results
    from the part files, the rest from the entries; a repeat carries the row it repeats.

    Returns the manifest's path. The part files are removed, unless ``keep_parts`` (the task is about to fail
    and a retry will need the rows of the images that already succeeded). ``stopped``: why the batch stopped
    early; images not yet final get a row saying where they were left.
    """
    entries = list(entries)
    repeated = {entry.repeat_of for entry in entries if entry.state == "repeat"}
    kept: dict[int, dict[str, Any]] = {}  # rows that later rows repeat (few)
    parts = _compacted_parts(folder / PARTS_FOLDER)
    stored = heapq.merge(*(_rows(part) for part in parts), key=lambda row: row["index"])
    head = next(stored, None)
    manifest = folder / MANIFEST_FILE
    with atomic_writer(manifest) as out:
        for entry in entries:
            candidates = []
            while head is not None and head["index"] <= entry.index:
                if head["index"] == entry.index:
                    candidates.append(head)
                head = next(stored, None)
            row = _row(entry, candidates, kept, stopped)
            if entry.index in repeated:
                kept[entry.index] = row
            out.write(json.dumps(row) + "\n")
    if not keep_parts:
        remove_parts(folder)
    return manifest


def _row(
    entry: BatchEntry, candidates: list[dict[str, Any]], kept: dict[int, dict[str, Any]], stopped: str | None
) -> dict[str, Any]:
    if entry.state == "repeat":
        assert entry.repeat_of is not None  # a repeat always names the row it repeats
        return repeat_row(entry, kept[entry.repeat_of])  # an earlier row: its request answers both
    if entry.state != "done":
        return failure_row(entry) if entry.final or stopped is None else _stopped_row(entry, stopped)
    for row in candidates:
        if row.get("request_id") == entry.request_id:
            return row
    return _lost_row(entry)


def merge_manifests(manifests: list[Any], destination: Any) -> dict[str, Any]:
    """Join the manifests of a batch's shards into ``destination`` (a file path), shard after shard, row by row.

    Each row keeps its fields and gains ``shard`` (its manifest's position in ``manifests``) and ``shard_index``
    (its index in that shard); ``index`` becomes its position in the merged manifest. Returns counts of the merged
    rows: ``images``, ``succeeded``, ``failed`` (any other status), ``submissions`` and ``cost_usd``.
    """
    counts: dict[str, Any] = {"images": 0, "succeeded": 0, "failed": 0, "submissions": 0, "cost_usd": 0.0}
    with atomic_writer(destination) as out:
        for shard, manifest in enumerate(manifests):
            for row in _rows(manifest):
                row = {**row, "shard": shard, "shard_index": row.get("index"), "index": counts["images"]}
                counts["images"] += 1
                counts["succeeded" if row.get("status") == "succeeded" else "failed"] += 1
                counts["submissions"] += int(row.get("submissions") or 0)
                counts["cost_usd"] += float(row.get("cost_usd") or 0.0)
                out.write(json.dumps(row) + "\n")
    counts["cost_usd"] = round(counts["cost_usd"], 6)
    return counts


def remove_parts(folder: Any) -> None:
    """Delete the part files once the manifest holds their rows and no retry will need them."""
    parts_folder = folder / PARTS_FOLDER
    if not parts_folder.exists():
        return
    for part in list(parts_folder.iterdir()):
        part.unlink()
    try:
        parts_folder.rmdir()
    except (OSError, AttributeError, NotImplementedError):
        pass


def _compacted_parts(parts_folder: Any) -> list[Any]:
    """The part files, merged ``MERGE_FAN_IN`` at a time into sorted parts until at most that many remain. A merged
    part is written before its inputs are deleted: a crash in between leaves duplicates, which the manifest takes
    once."""
    parts = sorted(parts_folder.iterdir(), key=str) if parts_folder.exists() else []
    while len(parts) > MERGE_FAN_IN:
        group, parts = parts[:MERGE_FAN_IN], parts[MERGE_FAN_IN:]
        merged = parts_folder / f"part-merged-{uuid.uuid4().hex[:12]}.jsonl"
        with atomic_writer(merged) as out:
            for row in heapq.merge(*(_rows(part) for part in group), key=lambda row: row["index"]):
                out.write(json.dumps(row) + "\n")
        for part in group:
            part.unlink()
        parts.append(merged)
    return parts


def _rows(path: Any) -> Iterator[dict[str, Any]]:
    with path.open("r") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def is_local(path: Any) -> bool:
    return getattr(path, "protocol", "") in ("", "file", "local")


@contextmanager
def atomic_writer(path: Any) -> Iterator[Any]:
    """A text stream to ``path`` that readers see whole or not at all: local files are written to a temporary
    name and renamed over it; object stores publish an object when its upload completes."""
    if not is_local(path):
        with path.open("w") as handle:
            yield handle
        return
    target = str(path)[len("file://") :] if str(path).startswith("file://") else getattr(path, "path", str(path))
    temporary = f"{target}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        with open(temporary, "w") as handle:
            yield handle
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _stopped_row(entry: BatchEntry, reason: str) -> dict[str, Any]:
    """An image the batch left behind when it stopped early: not submitted, still at fal, or completed at fal and
    not stored yet (both paid and kept: a retry or clear fetches them without paying again)."""
    if entry.state == "submitted":
        where = (
            f"still at fal as request {entry.request_id}: a retry or clear of the task fetches it without paying again"
        )
    elif entry.state == "completed":
        where = (
            f"completed at fal as request {entry.request_id}, result not stored yet ({entry.error}): a retry "
            "or clear of the task fetches it without paying again"
        )
    else:
        where = "not submitted"
    return {**failure_row(entry), "error": f"{where}; the batch stopped: {reason}", "error_class": "BatchStopped"}


def _lost_row(entry: BatchEntry) -> dict[str, Any]:
    """An image marked done whose row is missing (its part file was deleted by hand): say so, do not hide it."""
    entry.fail(
        "its result was stored, but its manifest row was lost; see its request's folder for result.json",
        "ManifestRowMissing",
    )
    return failure_row(entry)
