"""The result cache on the batch (``storage.result_cache``): an image whose request is in the cache is answered from
it when its turn comes (nothing uploaded, nothing sent); a paid result is kept as soon as it is stored; identical
requests within the batch are sent once and the others wait for that one; tasks sharing the cache claim a request
before paying for it, so two tasks missing the same key at once pay once (on a local or shared POSIX folder).

An answered image is held as ``pending`` until its manifest row is on storage (``take_answered``), then marked done:
a try that stops in between answers it again from the cache, at no cost. A waiting image stays ``pending`` and is
left out of the rounds (``blocked``) until the request it waits for is final, or another task's claim ends.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.inputs import InputLimits, ReadImage
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.batch import BatchEntry
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = ["ANSWERED", "CLAIM_RECHECK_SECONDS", "HIT_ROWS_PER_PART", "WAITING", "BatchCache", "CacheSettings"]

ANSWERED = "answered from the result cache"
WAITING = "waiting for the request that pays for the same key"
HIT_ROWS_PER_PART = 256
"""Rows of answered images held before they are written as one manifest part (memory stays bounded)."""
CLAIM_RECHECK_SECONDS = 5.0
"""How long an image whose key another task has claimed waits before the cache is looked at again."""
_IN_FLIGHT = ("sending", "submitted", "completed")


@dataclass(frozen=True)
class CacheSettings:
    """What the batch operator was told about the cache (checked), and who it is: ``owner`` names the task
    instance in claims (its folder), so its own retry takes its claims back."""

    root: Any
    mode: str = "read_write"
    max_age: float | None = None
    salt: str | None = None
    key_urls: bool = False
    owner: str = ""


class BatchCache:
    """The cache as one batch uses it during one stay on the worker."""

    def __init__(self, settings: CacheSettings, endpoint: Endpoint, state: BatchState, folder: Any, log: Any):
        from airflow_provider_sam3.storage.result_cache import ResultCache

        self.settings = settings
        self.cache = ResultCache(settings.root, mode=settings.mode, max_age=settings.max_age, log=log)
        self.own = ResultCache(settings.root, mode="read", max_age=settings.max_age, log=log)
        """Reads the entries this batch keeps, whatever its mode (identical images in it are sent once)."""
        self.endpoint = endpoint
        self.state = state
        self.folder = folder
        self.log = log
        self.rows: list[tuple[BatchEntry, str, dict[str, Any]]] = []
        self.rows_lock = threading.Lock()  # look-ups run in threads; the loop takes their rows
        self.leaders: dict[str, str] = {
            entry.cache_key: key
            for key, entry in state.entries.items()
            if entry.cache_key and entry.state in _IN_FLIGHT
        }
        self.recheck_at: dict[str, float] = {}
        self.hits = 0

    # ------------------------------------------------------------------ before an image is sent

    def blocked(self, entry: BatchEntry) -> bool:
        """Whether a pending image waits for another request with its key (this batch's, or a task's claim)."""
        key = entry.cache_key
        if key is None:
            return False
        if self._leader(key, entry) is not None:
            return True
        return self.recheck_at.get(key, 0.0) > time.monotonic()

    async def answer(self, entry: BatchEntry, image: BatchImage, shared: dict[str, Any], read: ReadImage) -> str | None:
        """``ANSWERED`` (its row is held for ``take_rows``), ``WAITING`` (put back in line), or ``None``: send it
        (claimed first when tasks share the cache)."""
        key = entry.cache_key = self.key_of(image, shared, read)
        if key is None:
            return None
        if self._leader(key, entry) is not None:
            entry.state = "pending"
            return WAITING
        if self.cache.mode != "read":  # an identical image waits for this one's entry (read mode keeps none)
            self.leaders[key] = str(entry.index)  # before looking: the batch's other images with this key wait
        try:
            outcome, answer = await asyncio.to_thread(self._look_up, entry, key)
        except OSError as error:  # the cache's folder cannot be read or claimed in: send without it
            self.log.warning("images[%d]: the result cache could not be used (%s); sending it", entry.index, error)
            return None
        if outcome is not None:
            entry.state = "pending"
            self.leaders.pop(key, None)
        if answer is not None:  # held on the loop, after the entry is pending: a write of held rows marks it done
            with self.rows_lock:
                self.rows.append(answer)
        return outcome

    def key_of(self, image: BatchImage, shared: dict[str, Any], read: ReadImage) -> str | None:
        """The image's request key (``storage.cache_keys.request_key``), or None when it is not cached."""
        from airflow_provider_sam3.batch.inputs import PLACEHOLDER_IMAGE_URL, image_fields
        from airflow_provider_sam3.storage.cache_keys import request_key

        fields = image_fields(self.endpoint, image, shared, read.url or PLACEHOLDER_IMAGE_URL, read.facts)
        digests = {"image_url": read.digest} if read.digest else None
        settings = self.settings
        return request_key(self.endpoint, fields, digests=digests, key_urls=settings.key_urls, salt=settings.salt)

    async def count_answered(self, entries: list[BatchEntry], shared: dict[str, Any], limits: InputLimits) -> int:
        """How many of these images the cache answers now (each read and looked up; nothing copied or claimed):
        what the cost ceiling does not count."""
        from airflow_provider_sam3.batch.inputs import INSPECT_CONCURRENCY, read_image
        from airflow_provider_sam3.batch.listing import BatchImage
        from airflow_provider_sam3.exceptions import InputValidationError

        queue = iter(entries)
        found = 0

        async def worker() -> None:  # a few workers over one iterator: memory does not grow with the batch
            nonlocal found
            for entry in queue:
                image = BatchImage(entry.source, entry.conn_id, entry.arguments, confined=entry.confined)
                try:
                    key = self.key_of(image, shared, await read_image(image, f"images[{entry.index}]", limits))
                except InputValidationError:  # refused again when its turn comes, and counted then
                    continue
                if key is not None and await asyncio.to_thread(self._still_answered, key):
                    found += 1

        await asyncio.gather(*(worker() for _ in range(INSPECT_CONCURRENCY)))
        return found

    def _still_answered(self, key: str) -> bool:
        """Whether the cache answers ``key`` with this endpoint's result until the batch's deadline (an entry that
        expires before the image's turn would be paid)."""
        hit = self.cache.get(key, now=max(self.state.deadline, time.time()))
        return hit is not None and hit.endpoint_id == self.endpoint.endpoint_id

    def _leader(self, key: str, entry: BatchEntry) -> str | None:
        """The entry of this batch paying for ``key`` now, when it is not ``entry``."""
        leader = self.leaders.get(key)
        if leader is None or leader == str(entry.index):
            return None
        if self.state.entries[leader].state in _IN_FLIGHT:
            return leader
        del self.leaders[key]
        return None

    def _look_up(self, entry: BatchEntry, key: str) -> tuple[str | None, tuple[BatchEntry, str, dict] | None]:
        """In a thread: the answer from the cache (its files copied, its row made), else the claim to pay."""
        answer = self._answer(entry, key)
        if answer is not None:
            return ANSWERED, answer
        if self.cache.mode != "read_write":
            return None, None
        held_by = self.cache.claim(key, self._owner(entry), lease=max(self.state.deadline - time.time(), 60.0))
        if held_by is None:
            answer = self._answer(entry, key)  # kept by the task that held the claim until a moment ago?
            if answer is not None:
                self.release(entry)
                return ANSWERED, answer
            return None, None
        self.log.info(
            "images[%d] waits: another task (%s) is paying for the same request; its result is taken from the "
            "result cache once kept",
            entry.index,
            held_by.rsplit("#", 1)[0],
        )
        self.recheck_at[key] = time.monotonic() + CLAIM_RECHECK_SECONDS
        return WAITING, None

    def _answer(self, entry: BatchEntry, key: str) -> tuple[BatchEntry, str, dict] | None:
        """The entry's answer from the cache: its files copied under the batch's folder and its manifest row. An
        entry this batch kept itself (identical images in one batch) is used in every mode that writes."""
        from airflow_provider_sam3.models.batch import success_row
        from airflow_provider_sam3.storage.cached_documents import document_from_cache

        hit = self.cache.get(key)
        if hit is None and self.cache.mode in ("write", "refresh"):
            hit = self.own.get(key)
            hit = hit if hit is not None and hit.created_at >= self.state.started_at else None
        if hit is None:
            return None
        document = document_from_cache(
            hit, endpoint_id=self.endpoint.endpoint_id, image=entry.image, output_path=self.folder, log=self.log
        )
        if document is None:
            return None
        row = success_row(entry, document.model_dump(mode="json"))
        row.update(request_id=hit.request_id, submissions=entry.submissions, cost_usd=0.0)
        return entry, hit.request_id, row

    def take_answered(self) -> list[tuple[BatchEntry, str, dict[str, Any]]]:
        """The held answers (entry, the request that paid, its row), handed over once: the caller writes the rows,
        then marks them done (``mark_answered``)."""
        with self.rows_lock:
            taken, self.rows = self.rows, []
        return taken

    async def write_answered(self) -> None:
        """Write the rows of the images answered so far as one manifest part, then mark them done."""
        from airflow_provider_sam3.batch.manifest import write_part

        answered = self.take_answered()
        if not answered:
            return
        cycle, self.state.cycle = self.state.cycle, self.state.cycle + 1
        await asyncio.to_thread(write_part, self.folder, cycle, [row for _, _, row in answered])
        self.mark_answered(answered)
        self.log.info("Answered %d images from the result cache (nothing sent for them)", len(answered))

    def only_claimed_elsewhere(self, pending: list[BatchEntry]) -> bool:
        """Whether every pending image waits for a key another task is paying for."""
        return bool(pending) and all(self.blocked(entry) for entry in pending)

    def unclaim_failures(self, entries: Iterable[BatchEntry]) -> None:
        """Images that failed, or are back in line, pay for nothing now: their claims are dropped, so a task
        waiting for one of their keys pays itself instead of waiting for the claim's lease (an image sent again
        claims again first)."""
        for entry in entries:
            if entry.state in ("failed", "invalid", "pending") and entry.cache_key:
                self.release(entry)

    def mark_answered(self, answered: list[tuple[BatchEntry, str, dict[str, Any]]]) -> None:
        """These rows are on storage: their images are done, answered by the request that paid."""
        for entry, request_id, _ in answered:
            entry.request_id, entry.cache_hit = request_id, True
            entry.state, entry.error, entry.error_class, entry.retryable = "done", None, None, False
            self.state.touch(str(entry.index))
        self.hits += len(answered)

    # ------------------------------------------------------------------ after a request was paid

    def keep(
        self,
        entry: BatchEntry,
        reference: RequestReference,
        output: Any,
        files: dict[str, bytes],
        cost_usd: float | None,
        metrics: dict[str, Any] | None = None,
    ) -> bool:
        """Keep a paid result (``files``: its output files by fal URL, as downloaded); whether it was kept. A
        failure is said in the log, never raised: the batch has its result."""
        from airflow_provider_sam3.storage.cached_documents import keep_result

        if entry.cache_key is None:
            return False
        try:
            kept = keep_result(
                self.cache,
                entry.cache_key,
                reference=reference,
                output=output,
                metrics=metrics,
                urls=list(files),
                read=files.__getitem__,
                cost_usd=cost_usd,
            )
        except Exception as error:  # noqa: BLE001 - the result is the batch's; the cache is a saving
            self.log.warning(
                "images[%d]: could not keep request %s in the result cache (%s)",
                entry.index,
                reference.request_id,
                error,
            )
            return False
        finally:
            self.release(entry)
        return kept is not None

    def release(self, entry: BatchEntry) -> None:
        """Drop this task's claim on the entry's key (its result is kept, or it failed for good)."""
        if entry.cache_key is not None and self.cache.mode == "read_write":
            try:
                self.cache.release(entry.cache_key, self._owner(entry))
            except OSError as error:  # the claim ends with its lease anyway
                self.log.debug("could not release the claim on %s: %s", entry.cache_key, error)

    def _owner(self, entry: BatchEntry) -> str:
        return f"{self.settings.owner}#{entry.index}"
