"""What the batch does with requests that finished: fetch each result, copy its outputs to the user's storage
(downloads run concurrently on one connection pool), and turn it into a manifest row (``batch.manifest`` writes
them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.errors import is_runner_fault
from airflow_provider_sam3.models.batch import BatchEntry, success_row

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.cache import BatchCache
    from airflow_provider_sam3.batch.ports import FalQueue
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = ["FETCH_CONCURRENCY", "ResultCollector", "completed_error", "worth_resubmitting"]

FETCH_CONCURRENCY = 8


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
    if is_runner_fault(kind):
        return exc.FalTransientError(f"fal's runner failed: {error}", **where)
    if kind == "FalRequestNotFoundError":
        return exc.FalRequestNotFoundError(error, **where)
    return exc.FalAppError(f"the model app failed: {error}; fal does not bill failed requests", **where)


def worth_resubmitting(error: exc.Sam3ProviderError) -> bool:
    """Whether a new submission of the same image may succeed: transient faults, requests fal lost, and requests
    cancelled (by a clear or kill of this task: the new try still wants the image; fal does not bill a cancel)."""
    return bool(error.retryable) or isinstance(error, (exc.FalRequestNotFoundError, exc.FalRequestCancelledError))


class ResultCollector:
    """Turns finished requests into manifest rows, updating their entries (done, or failed and why).

    :param after_each: called with each entry once its result is dealt with (its bodies are then garbage).
    :param cache: where each paid result is kept (``batch.cache``), when the batch uses a result cache.
    """

    def __init__(
        self,
        hook: FalQueue,
        endpoint: Endpoint,
        output_path: Any,
        log: Any,
        after_each: Callable[[BatchEntry], None] | None = None,
        cache: BatchCache | None = None,
    ) -> None:
        self.hook = hook
        self.cache = cache
        self.endpoint = endpoint
        self.output_path = output_path
        self.log = log
        self.after_each = after_each
        self.gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def collect(
        self, finished: dict[str, tuple[BatchEntry, RequestReference, list[Any]]]
    ) -> list[dict[str, Any]]:
        """``finished``: request id -> (entry, reference, [error, error_type, inference_seconds]) from the poller."""
        rows = await asyncio.gather(*(self._one_then_notify(*item) for item in finished.values()))
        return [row for row in rows if row is not None]

    async def _one_then_notify(
        self, entry: BatchEntry, ref: RequestReference, outcome: list[Any]
    ) -> dict[str, Any] | None:
        try:
            return await self._one(entry, ref, outcome)
        finally:
            if self.after_each is not None:
                self.after_each(entry)

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
        from airflow_provider_sam3.storage.outputs import copy_outputs, output_urls

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
        if self.cache is not None and entry.cache_key is not None:
            metrics = {"inference_time": inference} if inference is not None else None
            if await asyncio.to_thread(self.cache.keep, entry, ref, output, files, result.cost_usd, metrics):
                from airflow_provider_sam3.models.document_fields import CacheNote

                copied.cache = CacheNote(key=entry.cache_key, hit=False)
        return copied.model_dump(mode="json")

    def _failed(self, entry: BatchEntry, error: exc.Sam3ProviderError) -> None:
        entry.fail(str(error), type(error).__name__, retryable=worth_resubmitting(error))
