"""What the batch operator does with requests that finished: fetch each result, copy its outputs to the user's
storage (downloads run concurrently on one connection pool), and write manifest rows.

Rows of images with a result are written as numbered part files under ``<output_path>/_manifest/`` after each
round, so a crash between rounds loses nothing; the final ``manifest.jsonl`` joins them with the failure rows, in
input order.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.models.batch import BatchEntry, failure_row, success_row

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.reference import RequestReference

MANIFEST_FILE = "manifest.jsonl"
PARTS_FOLDER = "_manifest"
FETCH_CONCURRENCY = 8


def completed_error(error: str, error_type: str | None, *, endpoint_id: str, request_id: str) -> exc.Sam3ProviderError:
    """The provider error for a request fal reports COMPLETED with an error, from its ``error_type`` alone
    (asking for the result would only repeat it, and retrying that call for a runner error would waste time)."""
    where = {"endpoint_id": endpoint_id, "request_id": request_id, "error_type": error_type}
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
            self._failed(entry, completed_error(str(error), error_type, endpoint_id=ref.endpoint_id,
                                                request_id=ref.request_id))
            return None
        async with self.gate:
            try:
                output = await self.hook.aresult(ref)
                document = await self._document(entry, ref, output, inference)
            except exc.Sam3ProviderError as failure:
                self._failed(entry, failure)
                return None
            except (OSError, ValueError) as failure:  # storage refused a write, or an unreadable body
                self._failed(entry, exc.FalRequestError(
                    f"the result could not be stored under {self.output_path}: {type(failure).__name__}: {failure}",
                    endpoint_id=ref.endpoint_id, request_id=ref.request_id, retryable=False,
                ))
                return None
        entry.state, entry.error, entry.error_class, entry.retryable = "done", None, None, False
        return success_row(entry, document)

    async def _document(self, entry: BatchEntry, ref: RequestReference, output: dict[str, Any],
                        inference: Any) -> dict[str, Any]:
        from airflow_provider_sam3.models.results import build_result
        from airflow_provider_sam3.operators.outputs import copy_outputs, output_urls

        result = build_result(self.endpoint, output, reference=ref, image=entry.image, completed_at=time.time(),
                              inference_seconds=inference)
        urls = output_urls(result)
        files = dict(zip(urls, await asyncio.gather(*(self.hook.adownload(url) for url in urls))))

        def downloaded(url: str) -> bytes:
            if url not in files:
                raise exc.FalRequestError(f"output {url[:100]} was not among the files fetched for this result",
                                          endpoint_id=ref.endpoint_id, request_id=ref.request_id)
            return files[url]

        copied = await asyncio.to_thread(copy_outputs, result, self.output_path, download=downloaded,
                                         output_json=output)
        return copied.model_dump(mode="json")

    def _failed(self, entry: BatchEntry, error: exc.Sam3ProviderError) -> None:
        entry.fail(str(error), type(error).__name__, retryable=worth_resubmitting(error))


def write_part(output_path: Any, cycle: int, rows: list[dict[str, Any]]) -> None:
    """This round's rows, written before the entries are marked done (a crash in between rewrites the part)."""
    if not rows:
        return
    folder = output_path / PARTS_FOLDER
    if getattr(folder, "protocol", "") in ("", "file", "local"):
        folder.mkdir(parents=True, exist_ok=True)
    (folder / f"part-{cycle:05d}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def write_manifest(output_path: Any, entries: list[BatchEntry], *, keep_parts: bool = False,
                   stopped: str | None = None) -> Any:
    """``manifest.jsonl``: one row per image in input order, results from the part files, failures from entries.

    Returns the manifest's path. The part files are removed, unless ``keep_parts`` (the task is about to fail
    and a retry will need the rows of the images that already succeeded). ``stopped``: why the batch stopped
    early; images not yet final get a row saying where they were left.
    """
    folder = output_path / PARTS_FOLDER
    parts = sorted(folder.iterdir(), key=str) if folder.exists() else []
    succeeded: dict[str, dict[str, Any]] = {}
    for part in parts:
        for line in part.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                succeeded[row["request_id"]] = row
    rows = []
    for entry in sorted(entries, key=lambda e: e.index):
        if entry.state != "done":
            rows.append(failure_row(entry) if entry.final or stopped is None else _stopped_row(entry, stopped))
        elif entry.request_id in succeeded:
            rows.append({**succeeded[entry.request_id], "index": entry.index})
        else:
            rows.append(_lost_row(entry))
    manifest = output_path / MANIFEST_FILE
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if not keep_parts:
        for part in parts:
            part.unlink()
        try:
            folder.rmdir()
        except (OSError, AttributeError, NotImplementedError):
            pass
    return manifest


def _stopped_row(entry: BatchEntry, reason: str) -> dict[str, Any]:
    """An image the batch left behind when it stopped early: not submitted, or still at fal (paid, kept)."""
    if entry.state == "submitted":
        where = (f"still at fal as request {entry.request_id}: a retry or clear of the task fetches it without "
                 "paying again")
    else:
        where = "not submitted"
    return {**failure_row(entry), "error": f"{where}; the batch stopped: {reason}", "error_class": "BatchStopped"}


def _lost_row(entry: BatchEntry) -> dict[str, Any]:
    """An image marked done whose row is missing (its part file was deleted by hand): say so, do not hide it."""
    entry.fail("its result was stored, but its manifest row was lost; see <output_path>/<request_id>/result.json",
               "ManifestRowMissing")
    return failure_row(entry)
