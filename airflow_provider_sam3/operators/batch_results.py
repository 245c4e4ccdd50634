"""What the batch operator does with requests that finished: fetch each result, copy its outputs to the user's
storage (downloads run concurrently on one connection pool), and write manifest rows.

Everything one batch task writes lives in its own folder, ``<output_path>/<dag_id>/<run_id>/<task_id>/`` (plus
``<map_index>/`` for a mapped task), so any number of batches, mapped or scheduled, can share an ``output_path``.
Rows of images with a result are written as numbered part files under ``<folder>/_manifest/`` after each round, so
a crash between rounds loses nothing; the final ``<folder>/manifest.jsonl`` joins them with the other rows, one per
input row, in input order.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.models.batch import BatchEntry, failure_row, repeat_row, success_row

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.reference import RequestReference

MANIFEST_FILE = "manifest.jsonl"
PARTS_FOLDER = "_manifest"
FETCH_CONCURRENCY = 8
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


class _Where(TypedDict):
    endpoint_id: str
    request_id: str
    error_type: str | None


def completed_error(error: str, error_type: str | None, *, endpoint_id: str, request_id: str) -> exc.Sam3ProviderError:
    """The provider error for a request fal reports COMPLETED with an error, from its ``error_type`` alone
    (asking for the result would only repeat it, and retrying that call for a runner error would waste time)."""
    where: _Where = {"endpoint_id": endpoint_id, "request_id": request_id, "error_type": error_type}
    kind = error_type or ""
    if kind == "validation_error":
        cls = exc.FalNoMasksError if "no masks" in error.lower() else exc.FalValidationError
        return cls(f"fal rejected the input: {error}", **where)
    if kind == "request_cancelled":
        return exc.FalRequestCancelledError(f"the request was cancelled: {error}", **where)
    if kind.startswith("runner_") or kind in ("startup_timeout", "request_timeout"):
        return exc.FalTransientError(f"fal's runner failed: {error}", **where)
    if kind == "FalRequestNotFoundError":
        return exc.FalRequestNotFoundError(error, **where)
    return exc.FalAppError(f"the model app failed: {error}; fal does not bill failed requests", **where)


def worth_resubmitting(error: exc.Sam3ProviderError) -> bool:
    """Whether a new submission of the same image may succeed: transient faults, requests fal lost, and requests
    cancelled (by a clear or kill of this task: the new try still wants the image; fal does not bill a cancel)."""
    return bool(error.retryable) or isinstance(error, (exc.FalRequestNotFoundError, exc.FalRequestCancelledError))


class ResultCollector:
    """Turns finished requests into manifest rows, updating their entries (done, or failed and why)."""

    def __init__(self, hook: FalHook, endpoint: Endpoint, output_path: Any, log: Any) -> None:
        self.hook = hook
        self.endpoint = endpoint
        self.output_path = output_path
        self.log = log
        self.gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def collect(
        self, finished: dict[str, tuple[BatchEntry, RequestReference, list[Any]]]
    ) -> list[dict[str, Any]]:
        """``finished``: request id -> (entry, reference, [error, error_type, inference_seconds]) from the poller."""
        rows = await asyncio.gather(*(self._one(*item) for item in finished.values()))
        return [row for row in rows if row is not None]

    async def _one(self, entry: BatchEntry, ref: RequestReference, outcome: list[Any]) -> dict[str, Any] | None:
        error, error_type, inference = (list(outcome) + [None, None, None])[:3]
        if error:
            self._failed(
                entry, completed_error(str(error), error_type, endpoint_id=ref.endpoint_id, request_id=ref.request_id)
            )
            return None
        if entry.state == "submitted":
            entry.billed += 1  # fal completed it without error: it bills this request, whatever happens next
        async with self.gate:
            try:
                output = await self.hook.aresult(ref)
            except exc.FalRequestNotFoundError as failure:
                self._failed(
                    entry,
                    exc.FalRequestNotFoundError(
                        f"fal completed request {ref.request_id} but no longer has its result ({failure}); the image "
                        "is submitted again",
                        endpoint_id=ref.endpoint_id,
                        request_id=ref.request_id,
                    ),
                )
                return None
            except (exc.FalValidationError, exc.FalAppError, exc.FalUntrustedUrlError) as failure:
                self._failed(entry, failure)
                return None
            except exc.Sam3ProviderError as failure:
                self._unstored(entry, ref, f"fetching its result failed: {failure}", failure)
                return None
            try:
                document = await self._document(entry, ref, output, inference)
            except (exc.FalOutputRefusedError, exc.FalUntrustedUrlError, exc.InputValidationError) as failure:
                self._failed(entry, failure)  # refused by the trust boundary: fetching again would be refused again
                return None
            except exc.Sam3ProviderError as failure:  # an output file could not be downloaded
                self._unstored(entry, ref, f"downloading its outputs failed: {failure}", failure)
                return None
            except OSError as failure:  # storage refused a write
                self._unstored(
                    entry,
                    ref,
                    f"storing its outputs under {self.output_path} failed: {type(failure).__name__}: {failure}",
                    failure,
                )
                return None
            except ValueError as failure:  # fal's answer does not match the endpoint's output schema
                self._failed(
                    entry,
                    exc.FalRequestError(
                        f"fal's result for request {ref.request_id} could not be read ({failure}); it was paid, so it "
                        "is not submitted again; its request id is in the manifest",
                        endpoint_id=ref.endpoint_id,
                        request_id=ref.request_id,
                        retryable=False,
                    ),
                )
                return None
        return success_row(entry, document)  # the caller marks it done once the row is on storage

    def _unstored(self, entry: BatchEntry, ref: RequestReference, what: str, failure: Exception) -> None:
        entry.completed_unstored(
            f"completed at fal as request {ref.request_id}, not stored yet: {what}", type(failure).__name__
        )
        self.log.warning(
            "images[%d] (%s): %s; it is fetched again, not submitted again", entry.index, entry.source, entry.error
        )

    async def _document(
        self, entry: BatchEntry, ref: RequestReference, output: dict[str, Any], inference: Any
    ) -> dict[str, Any]:
        from airflow_provider_sam3.models.results import build_result
        from airflow_provider_sam3.operators.outputs import copy_outputs, output_urls

        result = build_result(
            self.endpoint,
            output,
            reference=ref,
            image=entry.image,
            completed_at=time.time(),
            inference_seconds=inference,
        )
        urls = output_urls(result)
        files = dict(zip(urls, await asyncio.gather(*(self.hook.adownload(url) for url in urls))))

        def downloaded(url: str) -> bytes:
            if url not in files:
                raise exc.FalRequestError(
                    f"output {url[:100]} was not among the files fetched for this result",
                    endpoint_id=ref.endpoint_id,
                    request_id=ref.request_id,
                )
            return files[url]

        copied = await asyncio.to_thread(
            copy_outputs, result, self.output_path, download=downloaded, output_json=output
        )
        return copied.model_dump(mode="json")

    def _failed(self, entry: BatchEntry, error: exc.Sam3ProviderError) -> None:
        entry.fail(str(error), type(error).__name__, retryable=worth_resubmitting(error))


def write_part(folder: Any, cycle: int, rows: list[dict[str, Any]]) -> None:
    """This round's rows, written before the entries are marked done (a crash in between rewrites the part)."""
    if not rows:
        return
    parts = folder / PARTS_FOLDER
    if getattr(parts, "protocol", "") in ("", "file", "local"):
        parts.mkdir(parents=True, exist_ok=True)
    # A unique name: a process that crashed after writing a part and before saving its cycle never has its rows
    # overwritten by the next one (the manifest takes each request's row once, whichever part holds it).
    name = f"part-{cycle:05d}-{uuid.uuid4().hex[:8]}.jsonl"
    (parts / name).write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_manifest(
    folder: Any, entries: list[BatchEntry], *, keep_parts: bool = False, stopped: str | None = None
) -> Any:
    """``<folder>/manifest.jsonl``: one row per input row in input order; results from the part files, the rest
    from the entries; a repeat carries the row it repeats.

    Returns the manifest's path. The part files are removed, unless ``keep_parts`` (the task is about to fail
    and a retry will need the rows of the images that already succeeded). ``stopped``: why the batch stopped
    early; images not yet final get a row saying where they were left.
    """
    parts_folder = folder / PARTS_FOLDER
    parts = sorted(parts_folder.iterdir(), key=str) if parts_folder.exists() else []
    succeeded: dict[str, dict[str, Any]] = {}
    for part in parts:
        for line in part.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                succeeded[row["request_id"]] = row
    ordered = sorted(entries, key=lambda e: e.index)
    rows: list[dict[str, Any]] = []
    for entry in ordered:
        if entry.state == "repeat":
            assert entry.repeat_of is not None  # a repeat always names the row it repeats
            rows.append(repeat_row(entry, rows[entry.repeat_of]))  # an earlier row: its request answers both
        elif entry.state != "done":
            rows.append(failure_row(entry) if entry.final or stopped is None else _stopped_row(entry, stopped))
        elif entry.request_id in succeeded:
            rows.append({**succeeded[entry.request_id], "index": entry.index})
        else:
            rows.append(_lost_row(entry))
    manifest = folder / MANIFEST_FILE
    _replace(manifest, "".join(json.dumps(row) + "\n" for row in rows))
    if not keep_parts:
        remove_parts(folder)
    return manifest


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


def _replace(path: Any, text: str) -> None:
    """Write a whole file so that a reader sees the old one or the new one, never half of it (local files: a
    temporary file renamed over it; object stores write whole objects anyway)."""
    if getattr(path, "protocol", "") not in ("", "file", "local"):
        path.write_text(text)
        return
    target = str(path)[len("file://") :] if str(path).startswith("file://") else getattr(path, "path", str(path))
    temporary = f"{target}.tmp-{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, target)


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
