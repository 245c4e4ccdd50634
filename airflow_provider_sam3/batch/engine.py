"""The batch engine: one stay on the worker after another. It stores what the trigger reports, submits what is
due while storing what finishes meanwhile, fetches again what fal completed but could not be stored, and stays for
the end when little is left. No Airflow imports: the operator hands it a hook, the run's state, its folder and the
task state store, and turns ``BatchHalt`` into the task's failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.batch.cache import HIT_ROWS_PER_PART
from airflow_provider_sam3.batch.expiry import expire, settle_cancelled
from airflow_provider_sam3.batch.listing import warm_storage
from airflow_provider_sam3.batch.memory import CycleCollector, body_bytes_estimate, release_free_memory
from airflow_provider_sam3.batch.options import MAX_TRIGGER_REQUESTS, BatchOptions, Waiting
from airflow_provider_sam3.batch.pacing import fire_at_count, worth_staying
from airflow_provider_sam3.batch.planning import requeue_failures
from airflow_provider_sam3.batch.submit import ACCOUNT_ERRORS
from airflow_provider_sam3.batch.unrecorded import UnrecordedLedger, settle_reservations
from airflow_provider_sam3.exceptions import BatchHalt, FalRequestError
from airflow_provider_sam3.hooks.settings import MIN_SUBMIT_LEASE
from airflow_provider_sam3.models.batch import request_id_of
from airflow_provider_sam3.storage.state_store import guarded

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.ports import FalQueue, KeyValueStore, ResultFolder
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = [
    "BatchEngine",
    "END_POLL_INTERVAL",
    "FETCH_ATTEMPTS",
    "SUBMISSION_LEAD",
]

FETCH_ATTEMPTS = 5
"""Attempts per try to fetch and store a result fal completed before the try fails (its retry fetches it again)."""
END_POLL_INTERVAL = 0.5
"""Status rounds while the worker stays: the batch's end is what the user waits for."""
SUBMISSION_LEAD = 100
"""While submitting, results are stored only when at least this many requests wait at fal: submitting first keeps
fal's queue from running dry, storing fills the time the queue is long anyway."""


class BatchEngine:
    """Works on one batch for one stay on the worker (see ``run``)."""

    def __init__(
        self,
        hook: FalQueue,
        endpoint: Endpoint,
        state: BatchState,
        folder: ResultFolder,
        store: KeyValueStore | None,
        options: BatchOptions,
        log: Any,
    ) -> None:
        self.hook = hook
        self.endpoint = endpoint
        self.state = state
        self.folder = folder
        self.store = guarded(store)
        self.options = options
        self.log = log
        self.by_request: dict[str, str] = {}
        self.cycles = CycleCollector()
        self.ledger = UnrecordedLedger(folder)
        self.lease = MIN_SUBMIT_LEASE
        self.halted = False
        """Set when the task is killed (``on_kill``): nothing is reserved or sent after that."""
        self.cache: Any = None
        """The result cache as this stay uses it (``batch.cache.BatchCache``), when the batch has one."""

    # ------------------------------------------------------------------ one stay

    async def run(self, event: dict[str, Any] | None) -> Waiting | None:
        """One stay on the worker: store what the trigger reports, submit what is due while storing what
        finishes meanwhile, fetch again what fal completed but could not be stored, and stay while the next thing
        worth doing is seconds away. Returns None when every image is final, else what to defer on. Memory stays
        flat meanwhile (``batch.memory``)."""
        from airflow_provider_sam3.batch.memory import keep_large_buffers_off_the_heap

        keep_large_buffers_off_the_heap()
        with self.cycles:
            try:
                return await self._stay(event)
            except BaseException:  # the try fails or is killed: what it will not send, it no longer claims
                if self.cache is not None:
                    await asyncio.to_thread(self.cache.unclaim_failures, list(self.state.entries.values()))
                raise

    def _bodies_done(self, entry: BatchEntry) -> None:
        """An image's submit or result call is over: its bodies are garbage, collected once enough piled up."""
        self.cycles.passed(body_bytes_estimate(entry.width, entry.height))

    def _collector(self) -> Any:
        """Where finished requests become manifest rows, and paid results entries of the batch's result cache."""
        from airflow_provider_sam3.batch.cache import BatchCache
        from airflow_provider_sam3.batch.results import ResultCollector

        if self.options.cache is not None:
            self.cache = BatchCache(self.options.cache, self.endpoint, self.state, self.folder, self.log)
        return ResultCollector(
            self.hook, self.endpoint, self.folder, self.log, after_each=self._bodies_done, cache=self.cache
        )

    async def _stay(self, event: dict[str, Any] | None) -> Waiting | None:
        hook, state, store = self.hook, self.state, self.store
        # Before anything runs concurrently: the task state store is written synchronously from this loop, and
        # Airflow refuses a synchronous supervisor call while an async one (a connection lookup) is in flight.
        self.lease = (await hook.aget_settings()).submit_lease
        # Storage connections too, in a thread: a worker thread looking a connection up holds the supervisor
        # channel, and a state-store write from this loop at that moment is refused in the same way.
        await asyncio.to_thread(warm_storage, state.in_state("pending"), self.folder)
        collector = self._collector()
        self.by_request = state.by_request_id()
        rate = (event or {}).get("rate")
        if event is not None:
            await self._absorb(event, collector)
        poller = self._poller()  # after the event: what it reported finished is not polled again
        round_number, idle, refetches, refetch_at = 0, 0, 0, 0.0
        while True:
            self._stop_if_killed()
            await self._resolve_reservations(poller)
            requeue_failures(state, self.options, self.log)
            if time.time() >= state.deadline:
                await expire(hook, state, self.by_request, self.store)
            groups = state.grouped()
            answered = self.cache.hits if self.cache is not None else 0
            if groups["pending"]:
                await self._submit_while_storing(groups, poller, collector)
                groups = state.grouped()
            unstored = groups["completed"]
            if unstored and time.monotonic() >= refetch_at:  # backing off: storage or fal may need a while
                self._give_up_fetching_if_due(unstored)
                await self._store_finished({request_id_of(e): [None, None, None] for e in unstored}, collector)
                refetches += 1
                refetch_at = time.monotonic() + min(2.0**refetches / 4, 30.0)
                groups = state.grouped()
            waiting, unresolved = groups["submitted"], len(groups["sending"])
            pending, left_unstored = len(groups["pending"]), len(groups["completed"])
            if not waiting and not pending and not left_unstored and not unresolved:
                state.save(store)
                return None
            if not waiting:  # images whose submission failed for now, results to fetch again, or reservations
                defer, idle = await self._nothing_at_fal(groups, answered, idle)
                if defer:
                    state.save(store)
                    return Waiting([], None)  # off the worker: the tasks paying for those keys may need its slot
                continue
            rate = poller.rate() or rate
            fire_at = fire_at_count(len(waiting), pending, rate, self.options)
            # Results waiting to be fetched again keep the task here (bounded by FETCH_ATTEMPTS): fal keeps a
            # result for a limited time, and one that expires during a long deferral would be paid again.
            if (
                self.options.deferrable
                and not left_unstored
                and not unresolved  # an earlier try's reservation is settled here, once its lease has passed
                and not worth_staying(len(waiting), fire_at, rate)
            ):
                state.save(store)
                waiting.sort(key=lambda e: (e.submitted_at or 0, e.index))
                handed = waiting[:MAX_TRIGGER_REQUESTS]
                return Waiting([request_id_of(e) for e in handed], fire_at if len(handed) == len(waiting) else None)
            await asyncio.sleep(poller.throttle_pause(min(poller.interval(round_number), END_POLL_INTERVAL)))
            await self._poll_and_store(poller, collector, round_number)
            round_number += 1

    async def _nothing_at_fal(self, groups: dict[str, list[BatchEntry]], answered: int, idle: int) -> tuple[bool, int]:
        """Images are left but none waits at fal: go on at once when the cache just answered some, defer when the
        rest wait for keys other tasks are paying for (deferrable), else pause, longer each time. Returns (defer,
        idle rounds)."""
        cache = self.cache
        if cache is not None and cache.hits > answered:
            return False, 0
        settled = not groups["completed"] and not groups["sending"]
        if (
            self.options.deferrable
            and settled
            and cache is not None
            and cache.only_claimed_elsewhere(groups["pending"])
        ):
            return True, idle
        await asyncio.sleep(min(2.0 ** (idle + 1) / 4, 30.0))
        return False, idle + 1

    def _stop_if_killed(self) -> None:
        if self.halted:
            raise BatchHalt(
                FalRequestError("the task was killed (cleared, marked or stopped by Airflow); nothing more is sent"),
                final=False,
            )

    async def _resolve_reservations(self, poller: Any) -> None:
        """Settle what an earlier try reserved but could not record (``batch.unrecorded``) before anything new is
        sent for those images: an adopted request is waited for like any other."""
        if not any(entry.state == "sending" for entry in self.state.entries.values()):
            return
        queue_host = (await self.hook.aget_settings()).queue_host
        adopted = await settle_reservations(self.state, self.ledger, queue_host, self.lease, self.log)
        for entry in adopted:
            self.by_request[request_id_of(entry)] = str(entry.index)
        self.state.save(self.store)
        if adopted:
            poller.url_templates = self.state.url_templates or {}
            poller.explicit_urls.update({e.request_id: e.urls for e in adopted if e.urls})
            poller.add([request_id_of(e) for e in adopted])

    def _give_up_fetching_if_due(self, unstored: list[BatchEntry]) -> None:
        """A result fal completed that could not be fetched or stored ``FETCH_ATTEMPTS`` times in this try ends
        the try (the retry fetches it again, never submits it again)."""
        stuck = [e for e in unstored if e.fetch_failures >= FETCH_ATTEMPTS * self.options.try_number]
        if stuck:
            first = stuck[0]
            raise BatchHalt(
                FalRequestError(
                    f"{len(stuck)} results that fal completed could not be fetched or stored after {FETCH_ATTEMPTS} "
                    f"attempts (first: images[{first.index}] {first.source}: {first.error}). They are paid and "
                    "kept: a retry, or a clear once the cause is fixed, fetches them without submitting them again"
                ),
                final=False,
            )

    def _poller(self) -> Any:
        """A poller for the requests at fal now; submissions add to it as they go."""
        from airflow_provider_sam3.batch.polling import BatchPoller, ProgressLine

        state = self.state
        waiting = sorted(state.in_state("submitted"), key=lambda e: (e.submitted_at or 0, e.index))
        progress = state.progress()
        return BatchPoller(
            self.hook,
            state.endpoint_id,
            state.url_templates or {},
            [request_id_of(e) for e in waiting],
            explicit_urls={request_id_of(e): e.urls for e in waiting if e.urls},
            deadline=None,
            poll_interval=self.options.poll_interval,
            max_poll_interval=self.options.max_poll_interval,
            fire_at=None,
            progress=ProgressLine(progress["total"], progress["done"], progress["failed"], state.endpoint_id),
            log=self.log,
        )

    async def _submit_while_storing(self, groups: dict[str, list[BatchEntry]], poller: Any, collector: Any) -> None:
        """Submit what is due; meanwhile store the results of requests that finish (fal starts on the first
        submission, so a long submission would otherwise leave finished results waiting)."""
        submitted = asyncio.Event()
        state = self.state

        def on_submitted(entries: list[BatchEntry]) -> None:
            poller.url_templates = state.url_templates or {}
            poller.explicit_urls.update({e.request_id: e.urls for e in entries if e.urls})
            for entry in entries:
                self.by_request[request_id_of(entry)] = str(entry.index)
            poller.add([e.request_id for e in entries])

        async def store_meanwhile() -> None:
            round_number = 0
            while not submitted.is_set():
                try:
                    await asyncio.wait_for(submitted.wait(), timeout=poller.interval(round_number))
                except asyncio.TimeoutError:
                    if len(poller.waiting) >= SUBMISSION_LEAD:  # fal has plenty queued: time to store results
                        await self._poll_and_store(poller, collector, round_number)
                        round_number += 1

        storing = asyncio.create_task(store_meanwhile())
        try:
            await self._submit_due(groups, on_submitted)
        finally:
            submitted.set()
            await storing

    async def _submit_due(
        self, groups: dict[str, list[BatchEntry]], on_submitted: Callable[[list[BatchEntry]], None]
    ) -> None:
        """Submit pending images in input order (at most ``max_in_flight`` waiting at fal); each body is built
        when its turn comes, and each request id is in the task state store as soon as its submit call returns."""
        from airflow_provider_sam3.batch.inputs import image_fields, image_url, read_image
        from airflow_provider_sam3.batch.listing import BatchImage
        from airflow_provider_sam3.batch.submit import Submitter

        cache, options = self.cache, self.options
        room = max(0, options.max_in_flight - len(groups["submitted"]))
        ready = (e for e in groups["pending"] if cache is None or not cache.blocked(e))
        due = [str(entry.index) for entry, _ in zip(ready, range(room))]
        if not due:
            return

        async def body_for(entry: BatchEntry) -> dict[str, Any] | str:
            image = BatchImage(entry.source, entry.conn_id, entry.arguments, confined=entry.confined)
            read = await read_image(image, f"images[{entry.index}]", options.limits)
            entry.width, entry.height = read.facts.width, read.facts.height
            if cache is not None:
                answered = await cache.answer(entry, image, options.shared_arguments, read)
                if answered is not None:
                    if len(cache.rows) >= HIT_ROWS_PER_PART:
                        await cache.write_answered()
                    return answered
            url = await image_url(self.hook, image, read, options.limits)
            return image_fields(self.endpoint, image, options.shared_arguments, url, read.facts)

        submitter = Submitter(
            self.hook,
            self.endpoint,
            self.state,
            self.store,
            concurrency=self.options.submit_concurrency,
            options=self.options.submit_options,
            body_for=body_for,
            log=self.log,
            ledger=self.ledger,
            lease=self.lease,
            try_number=self.options.try_number,
            halted=lambda: self.halted,
            after_each=self._bodies_done,
        )
        try:
            await submitter.submit(due, on_submitted)
        finally:
            if cache is not None:
                await cache.write_answered()
                cache.unclaim_failures(self.state.entries[key] for key in due)
        self.state.save(self.store)

    async def _poll_and_store(self, poller: Any, collector: Any, round_number: int) -> None:
        """One status round on the worker, then store whatever finished."""
        if not poller.waiting:
            return
        _, fatal = await poller.poll_once(round_number)
        if fatal is not None:
            raise BatchHalt(fatal, final=True)
        if poller.progress.due():
            self.log.info(
                poller.progress.describe(poller.finished_count, poller.failed, poller.running, len(poller.waiting))
            )
        finished = poller.take_finished()
        if finished:
            await self._store_finished(finished, collector)

    async def _store_finished(self, finished: dict[str, list[Any]], collector: Any) -> None:
        """Fetch and store finished requests' outputs, write their manifest rows, then save their entries."""
        from airflow_provider_sam3.batch.manifest import write_part
        from airflow_provider_sam3.batch.polling import entry_reference

        state = self.state
        items = {}
        for request_id, outcome in finished.items():
            key = self.by_request.get(request_id)
            if key is not None and state.entries[key].state in ("submitted", "completed"):
                entry = state.entries[key]
                items[request_id] = (entry, entry_reference(state, entry), outcome)
        if not items:
            return
        rows = await collector.collect(items)
        await asyncio.to_thread(write_part, collector.output_path, state.cycle, rows)
        state.cycle += 1
        for row in rows:  # done only now: an entry saved as done always has its row on storage
            entry = state.entries[self.by_request[row["request_id"]]]
            entry.state, entry.error, entry.error_class, entry.retryable = "done", None, None, False
        for request_id in items:
            state.touch(self.by_request[request_id])
        if self.cache is not None:
            self.cache.unclaim_failures(entry for entry, _, _ in items.values())
        state.save(self.store)
        await asyncio.to_thread(release_free_memory)
        failed = sum(1 for entry, _, _ in items.values() if entry.state == "failed")
        unstored = sum(1 for entry, _, _ in items.values() if entry.state == "completed")
        self.log.info(
            "Stored %d finished requests: %d results, %d failed, %d to fetch again",
            len(items),
            len(rows),
            failed,
            unstored,
        )

    async def _absorb(self, event: dict[str, Any], collector: Any) -> None:
        """What the trigger reports: store what finished, record cancellations, and end on a fatal error."""
        await self._store_finished(event.get("finished") or {}, collector)
        await settle_cancelled(self.hook, self.state, self.by_request, event.get("cancelled") or {})
        self.state.save(self.store)
        if event["status"] == "error":
            error = FalRequestError(f"waiting for the batch failed: {event.get('message')}")
            raise BatchHalt(error, final=event.get("error_class") in ACCOUNT_ERRORS)
