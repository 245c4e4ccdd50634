"""The batch's work on the worker, one stay after another: store what the trigger reports, submit what is due while
storing what finishes meanwhile, fetch again what fal completed but could not be stored, and stay for the end when
little is left (a mixin of ``Sam3BatchOperator``: it reads the operator's options)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalRequestError
from airflow_provider_sam3.models.batch import request_id_of
from airflow_provider_sam3.operators.batch_submit import ACCOUNT_ERRORS

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.batch import BatchEntry
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.operators.batch_inputs import BatchImage
    from airflow_provider_sam3.operators.batch_state import BatchState

FETCH_ATTEMPTS = 5
"""Attempts per try to fetch and store a result fal completed before the try fails (its retry fetches it again)."""
WORKER_WAIT_SECONDS = 5.0
"""When fal's remaining work is estimated below this, the worker waits for it itself: a deferral round trip
(about 4 s measured on Airflow 3.3.2 here) would cost more than it saves."""
END_POLL_INTERVAL = 0.5
"""Status rounds while the worker stays for the last few seconds: the batch's end is what the user waits for."""
SUBMISSION_LEAD = 100
"""While submitting, results are stored only when at least this many requests wait at fal: submitting first keeps
fal's queue from running dry, storing fills the time the queue is long anyway."""
COLLECT_EVERY_MIN = 100
COLLECT_ROUNDS = 5
"""By default the trigger hands back finished requests about this many times per batch (at least
``COLLECT_EVERY_MIN`` at a time), so outputs are copied while fal still works on the rest."""


class BatchWork:
    """The async part of ``Sam3BatchOperator``."""

    deferrable: bool
    fal_conn_id: str
    max_in_flight: int | None
    submit_concurrency: int
    collect_every: int | None
    poll_interval: float | None
    max_poll_interval: float | None
    priority: str | None
    log: Any
    _try_number: int
    _live_state: BatchState | None

    if TYPE_CHECKING:
        # Defined by Sam3BatchOperator; declared here for the type checker only.
        def _requeue(self, state: BatchState) -> None: ...
        def _body(self, endpoint: Endpoint, image: BatchImage, where: str) -> tuple[dict[str, Any], dict[str, Any]]: ...
        @staticmethod
        def _reference(state: BatchState, entry: BatchEntry) -> RequestReference: ...

    async def _work(
        self,
        endpoint: Endpoint,
        state: BatchState,
        folder: Any,
        bodies: dict[str, dict[str, Any]],
        event: dict[str, Any] | None,
        store: Any,
    ) -> tuple[list[str], int | None] | None:
        """One stay on the worker: store what the trigger reports, submit what is due while storing what
        finishes meanwhile, fetch again what fal completed but could not be stored, and stay for the end when
        little is left. Returns None when every image is final, else the request ids to defer on (in submission
        order) and when the trigger should fire early."""
        from airflow_provider_sam3.hooks.fal import FalHook
        from airflow_provider_sam3.operators.batch_results import ResultCollector

        hook = FalHook(self.fal_conn_id)
        # Before anything runs concurrently: the task state store is written synchronously from this loop, and
        # Airflow refuses a synchronous supervisor call while an async one (a connection lookup) is in flight.
        await hook.aget_settings()
        # Storage connections too, in a thread: a worker thread looking a connection up holds the supervisor
        # channel, and a state-store write from this loop at that moment is refused in the same way.
        await asyncio.to_thread(self._warm_storage, state, folder)
        collector = ResultCollector(hook, endpoint, folder, self.log)
        rate = (event or {}).get("rate")
        self._live_state = state
        try:
            if event is not None:
                await self._absorb(event, state, collector, store)
            poller = self._poller(hook, state)  # after the event: what it reported finished is not polled again
            round_number, idle, refetches, refetch_at = 0, 0, 0, 0.0
            while True:
                self._requeue(state)
                if time.time() >= state.deadline:
                    await self._expire(hook, state, store)
                if state.in_state("pending"):
                    await self._submit_while_storing(hook, endpoint, state, bodies, store, poller, collector)
                unstored = state.in_state("completed")
                if unstored and time.monotonic() >= refetch_at:  # backing off: storage or fal may need a while
                    self._give_up_fetching_if_due(unstored)
                    await self._store_finished(
                        {request_id_of(e): [None, None, None] for e in unstored}, state, collector, store
                    )
                    refetches += 1
                    refetch_at = time.monotonic() + min(2.0**refetches / 4, 30.0)
                waiting = state.in_state("submitted")
                pending, left_unstored = len(state.in_state("pending")), len(state.in_state("completed"))
                if not waiting and not pending and not left_unstored:
                    state.save(store)
                    return None
                if not waiting:  # only images whose submission failed for now, or results to fetch again
                    idle += 1
                    await asyncio.sleep(min(2.0**idle / 4, 30.0))
                    continue
                rate = poller.rate() or rate
                # Results waiting to be fetched again keep the task here (bounded by FETCH_ATTEMPTS): fal keeps a
                # result for a limited time, and one that expires during a long deferral would be paid again.
                if self.deferrable and not left_unstored and not self._stay_for_the_end(len(waiting), pending, rate):
                    state.save(store)
                    waiting.sort(key=lambda e: (e.submitted_at or 0, e.index))
                    return [request_id_of(e) for e in waiting], self._fire_at(len(waiting), pending, rate)
                await asyncio.sleep(min(poller.interval(round_number), END_POLL_INTERVAL))
                await self._poll_and_store(poller, collector, state, store, round_number)
                round_number += 1
        finally:
            self._live_state = None
            await hook.aclose()

    @staticmethod
    def _warm_storage(state: BatchState, folder: Any) -> None:
        """Resolve each object store the batch will read or write (one connection lookup each) before anything
        runs concurrently."""
        from airflow_provider_sam3.operators.batch_inputs import BatchImage

        stores: dict[tuple[str, str | None], BatchEntry] = {}
        for entry in state.in_state("pending"):
            scheme = entry.source.split("://", 1)[0].lower() if "://" in entry.source else ""
            if scheme not in ("", "http", "https", "file", "data"):
                stores.setdefault((scheme, entry.conn_id), entry)
        for entry in stores.values():
            getattr(BatchImage(entry.source, entry.conn_id).opened(), "fs", None)
        getattr(folder, "fs", None)

    def _give_up_fetching_if_due(self, unstored: list[BatchEntry]) -> None:
        """A result fal completed that could not be fetched or stored ``FETCH_ATTEMPTS`` times in this try ends
        the try (the retry fetches it again, never submits it again)."""
        stuck = [e for e in unstored if e.fetch_failures >= FETCH_ATTEMPTS * self._try_number]
        if stuck:
            first = stuck[0]
            raise FalRequestError(
                f"{len(stuck)} results that fal completed could not be fetched or stored after {FETCH_ATTEMPTS} "
                f"attempts (first: images[{first.index}] {first.source}: {first.error}). They are paid and kept: a "
                "retry, or a clear once the cause is fixed, fetches them without submitting them again"
            )

    @staticmethod
    def _stay_for_the_end(waiting: int, pending: int, rate: float | None) -> bool:
        """Whether fal's remaining work is short enough that deferring would cost more than it saves."""
        return not pending and rate is not None and waiting / rate <= WORKER_WAIT_SECONDS

    def _fire_at(self, waiting: int, pending: int, rate: float | None) -> int | None:
        """How many finished requests make the trigger fire early: to submit more (``max_in_flight``), to come
        back for the last few seconds of the batch, or to store outputs while fal works on the rest."""
        candidates = []
        if pending and self.max_in_flight:
            candidates.append(waiting - self.max_in_flight // 2)
        if rate:
            candidates.append(waiting - int(rate * WORKER_WAIT_SECONDS))
        if self.collect_every != 0:
            candidates.append(self.collect_every or max(COLLECT_EVERY_MIN, waiting // COLLECT_ROUNDS))
        useful = [count for count in candidates if 0 < count < waiting]
        return min(useful, default=None)

    def _poller(self, hook: FalHook, state: BatchState) -> Any:
        """A poller for the requests at fal now; submissions add to it as they go."""
        from airflow_provider_sam3.triggers.batch import BatchPoller, ProgressLine

        waiting = sorted(state.in_state("submitted"), key=lambda e: (e.submitted_at or 0, e.index))
        progress = self._progress(state)
        return BatchPoller(
            hook,
            state.endpoint_id,
            state.url_templates or {},
            [request_id_of(e) for e in waiting],
            explicit_urls={request_id_of(e): e.urls for e in waiting if e.urls},
            deadline=None,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            fire_at=None,
            progress=ProgressLine(progress["total"], progress["done"], progress["failed"], state.endpoint_id),
            log=self.log,
        )

    async def _submit_while_storing(
        self,
        hook: FalHook,
        endpoint: Endpoint,
        state: BatchState,
        bodies: dict[str, dict[str, Any]],
        store: Any,
        poller: Any,
        collector: Any,
    ) -> None:
        """Submit what is due; meanwhile store the results of requests that finish (fal starts on the first
        submission, so a long submission would otherwise leave finished results waiting)."""
        submitted = asyncio.Event()

        def on_submitted(entries: list[BatchEntry]) -> None:
            poller.url_templates = state.url_templates or {}
            poller.explicit_urls.update({e.request_id: e.urls for e in entries if e.urls})
            poller.add([e.request_id for e in entries])

        async def store_meanwhile() -> None:
            round_number = 0
            while not submitted.is_set():
                try:
                    await asyncio.wait_for(submitted.wait(), timeout=poller.interval(round_number))
                except asyncio.TimeoutError:
                    if len(poller.waiting) >= SUBMISSION_LEAD:  # fal has plenty queued: time to store results
                        await self._poll_and_store(poller, collector, state, store, round_number)
                        round_number += 1

        storing = asyncio.create_task(store_meanwhile())
        try:
            await self._submit_due(hook, endpoint, state, bodies, store, on_submitted)
        finally:
            submitted.set()
            await storing

    async def _submit_due(
        self,
        hook: FalHook,
        endpoint: Endpoint,
        state: BatchState,
        bodies: dict[str, dict[str, Any]],
        store: Any,
        on_submitted: Callable[[list[BatchEntry]], None],
    ) -> None:
        """Submit pending images in input order (at most ``max_in_flight`` waiting at fal); each request id is in
        the task state store as soon as its submit call returns."""
        from airflow_provider_sam3.operators.batch_inputs import BatchImage
        from airflow_provider_sam3.operators.batch_submit import Submitter

        due = [str(entry.index) for entry in state.in_state("pending")]
        if self.max_in_flight:
            due = due[: max(0, self.max_in_flight - len(state.in_state("submitted")))]

        def body_for(entry: BatchEntry) -> dict[str, Any]:
            body = bodies.pop(str(entry.index), None)
            if body is None:
                image = BatchImage(entry.source, entry.conn_id, entry.arguments)
                body, size = self._body(endpoint, image, f"images[{entry.index}]")
                entry.width, entry.height = size["width"], size["height"]
            return body

        submitter = Submitter(
            hook,
            endpoint,
            state,
            store,
            concurrency=self.submit_concurrency,
            priority=self.priority,
            body_for=body_for,
            log=self.log,
        )
        await submitter.submit(due, on_submitted)
        state.save(store)

    async def _poll_and_store(
        self, poller: Any, collector: Any, state: BatchState, store: Any, round_number: int
    ) -> None:
        """One status round on the worker, then store whatever finished."""
        from airflow_provider_sam3.operators.completion import as_task_error

        if not poller.waiting:
            return
        _, fatal = await poller.poll_once(round_number)
        if fatal is not None:
            raise as_task_error(fatal, retry_useless=True)
        if poller.progress.due():
            self.log.info(
                poller.progress.describe(poller.finished_count, poller.failed, poller.running, len(poller.waiting))
            )
        finished = poller.take_finished()
        if finished:
            await self._store_finished(finished, state, collector, store)

    async def _store_finished(
        self, finished: dict[str, list[Any]], state: BatchState, collector: Any, store: Any
    ) -> None:
        """Fetch and store finished requests' outputs, write their manifest rows, then save their entries."""
        from airflow_provider_sam3.operators.batch_results import write_part

        by_request = state.by_request_id()
        items = {}
        for request_id, outcome in finished.items():
            key = by_request.get(request_id)
            if key is not None and state.entries[key].state in ("submitted", "completed"):
                entry = state.entries[key]
                items[request_id] = (entry, self._reference(state, entry), outcome)
        if not items:
            return
        rows = await collector.collect(items)
        await asyncio.to_thread(write_part, collector.output_path, state.cycle, rows)
        state.cycle += 1
        for row in rows:  # done only now: an entry saved as done always has its row on storage
            entry = state.entries[by_request[row["request_id"]]]
            entry.state, entry.error, entry.error_class, entry.retryable = "done", None, None, False
        for request_id in items:
            state.touch(by_request[request_id])
        state.save(store)
        failed = sum(1 for entry, _, _ in items.values() if entry.state == "failed")
        unstored = sum(1 for entry, _, _ in items.values() if entry.state == "completed")
        self.log.info(
            "Stored %d finished requests: %d results, %d failed, %d to fetch again",
            len(items),
            len(rows),
            failed,
            unstored,
        )

    async def _absorb(self, event: dict[str, Any], state: BatchState, collector: Any, store: Any) -> None:
        """What the trigger reports: store what finished, record cancellations, and end on a fatal error."""
        from airflow_provider_sam3.operators.completion import as_task_error

        await self._store_finished(event.get("finished") or {}, state, collector, store)
        await self._settle_cancelled(collector.hook, state, event.get("cancelled") or {})
        state.save(store)
        if event["status"] == "error":
            error = FalRequestError(f"waiting for the batch failed: {event.get('message')}")
            retry_useless = event.get("error_class") in ACCOUNT_ERRORS
            raise as_task_error(error, retry_useless=retry_useless)

    async def _expire(self, hook: FalHook, state: BatchState, store: Any) -> None:
        """The batch's timeout passed: cancel what is at fal, and give up on what was not submitted. Results fal
        completed are still fetched (they are paid)."""
        from airflow_provider_sam3.triggers.batch import cancel_all

        waiting = state.in_state("submitted")
        outcomes = await cancel_all(hook, [self._reference(state, e) for e in waiting]) if waiting else {}
        await self._settle_cancelled(hook, state, outcomes)
        for key, entry in state.entries.items():
            if entry.state == "pending":  # nothing paid: a later try (a retry or a clear) may submit it
                entry.fail(
                    "the batch's timeout passed before this image was submitted",
                    "FalDeadlineExceededError",
                    retryable=True,
                )
                state.touch(key)
        state.save(store)

    async def _settle_cancelled(self, hook: FalHook, state: BatchState, outcomes: dict[str, str]) -> None:
        """Requests the batch's timeout cancelled. A cancel fal confirmed leaves nothing to pay: a later try may
        submit the image again. Any other answer (fal had finished it, or the cancel failed) is checked once: a
        completed request is paid and its result is fetched; a failed one fails as fal says."""
        from airflow_provider_sam3.exceptions import Sam3ProviderError
        from airflow_provider_sam3.operators.batch_results import completed_error, worth_resubmitting

        by_request = state.by_request_id()
        for request_id, outcome in outcomes.items():
            key = by_request.get(request_id)
            if key is None or state.entries[key].state != "submitted":
                continue
            entry = state.entries[key]
            state.touch(key)
            status = None
            if outcome != "CANCELLATION_REQUESTED":
                try:
                    status = await hook.astatus(self._reference(state, entry))
                except Sam3ProviderError:
                    status = None
            if status is not None and status.done and not status.error:
                entry.billed += 1
                entry.completed_unstored("fal completed it before the batch's timeout cancel arrived", "Completed")
                entry.fetch_failures = 0  # not a failed fetch: it was never fetched
            elif status is not None and status.done and status.error_type != "request_cancelled":
                error = completed_error(
                    str(status.error), status.error_type, endpoint_id=state.endpoint_id, request_id=request_id
                )
                entry.fail(str(error), type(error).__name__, retryable=worth_resubmitting(error))
            else:
                entry.fail(
                    f"the batch's timeout passed before fal finished it; cancel at fal: {outcome}",
                    "FalDeadlineExceededError",
                    retryable=True,
                )

    @staticmethod
    def _explicit_urls(state: BatchState, request_ids: list[str]) -> dict[str, dict[str, str]]:
        wanted = set(request_ids)
        return {e.request_id: e.urls for e in state.entries.values() if e.urls and e.request_id in wanted}

    @staticmethod
    def _progress(state: BatchState) -> dict[str, int]:
        counts = state.counts()
        return {"total": len(state.entries), "done": counts["done"], "failed": counts["failed"] + counts["invalid"]}
