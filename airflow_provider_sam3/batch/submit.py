"""Submitting a batch's images to fal: ``submit_concurrency`` calls in flight (a sliding window, so one slow call
holds back nobody), none sent without a durable reservation, each outcome durable the moment its call returns.

When its call returns, a submit slot has its outcome and the reservation of the image it sends next made durable in one
journal row (``BatchState.journal``), shared with the other slots whose calls returned meanwhile (``GroupJournal``), and
sends nothing before that row is written. So a try that Airflow has failed, cleared or replaced (its writes are refused)
stops before sending anything more: at most the calls already in flight when its writes stopped (``submit_concurrency``)
reach fal unrecorded. Those requests are handed to the next try through the task's folder (``batch.unrecorded``), which
waits for them instead of paying again; only when that fails are they cancelled. What no try can know is a call in
flight when its worker process died at once (SIGKILL): fal may have created that request, and fal has no idempotency key
to find it by. Such an image is sent again once that call can no longer be in flight, and counted as ``unseen``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import (
    BatchHalt,
    FalSubmitOutcomeUnknownError,
    FalUntrustedUrlError,
    InputValidationError,
    Sam3ProviderError,
    StateStoreRefusedError,
)

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.ports import FalQueue
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.batch.unrecorded import UnrecordedLedger
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = [
    "ACCOUNT_ERRORS",
    "JOURNAL_GROUP",
    "JOURNAL_GROUP_WINDOW",
    "UNRECORDED_CANCEL_SECONDS",
    "GroupJournal",
    "Submitter",
]

JOURNAL_GROUP = 32
"""Most entries in one journal row (about 400 bytes each, well under the store's 64 KB per value)."""
JOURNAL_GROUP_WINDOW = 0.010
"""The longest a journal write waits for other slots' answers to share its row. It waits as long as the last write
took: a write is a blocking round trip to Airflow's API server, so a slow store groups more and is written less
often, and an instant one is written at once."""
UNRECORDED_CANCEL_SECONDS = 10.0
"""How long cancelling a request that could be neither recorded nor handed over may take."""

ACCOUNT_ERRORS = ("FalAuthenticationError", "FalBalanceExhaustedError", "FalUntrustedUrlError", "FalTlsError")
"""Errors that stop the whole batch: no other image could be submitted or fetched with this key (or through this
queue host: one that answers with another host's URLs, or with a certificate the worker cannot verify, answers every
submit that way)."""


class Submitter:
    """Submits pending entries in input order and records each outcome in the entry and the state store.

    :param options: fal's queue options for every submit (``models.submit_options.SubmitOptions``), or None.
    :param body_for: ``async (entry) -> request body``, built when the image's turn comes: at most one body per
        slot exists at a time, so memory does not grow with the batch. A text instead of a body says the image is
        not to be sent (``batch.cache``: answered from the result cache, or waiting; the entry is ``pending``).
    :param ledger: where requests this try cannot record are handed to the next try.
    :param lease: the most seconds one submit call may take (its reservation's lease).
    :param halted: tells whether the task was killed: no new reservation is made after that.
    :param after_each: called with each entry once its submit call returned (its body is then garbage).
    """

    def __init__(
        self,
        hook: FalQueue,
        endpoint: Endpoint,
        state: BatchState,
        store: Any,
        *,
        concurrency: int,
        options: Any,
        body_for: Callable[[BatchEntry], Awaitable[dict[str, Any] | str]],
        log: Any,
        ledger: UnrecordedLedger,
        lease: float,
        try_number: int = 1,
        halted: Callable[[], bool] = lambda: False,
        after_each: Callable[[BatchEntry], None] | None = None,
    ) -> None:
        self.hook = hook
        self.endpoint = endpoint
        self.state = state
        self.store = store
        self.concurrency = concurrency
        self.options = options
        self.body_for = body_for
        self.log = log
        self.ledger = ledger
        self.lease = lease
        self.try_number = try_number
        self.halted = halted
        self._known_ids: set[str] | None = None
        self.after_each = after_each

    async def submit(self, keys: list[str], on_submitted: Callable[[list[BatchEntry]], None]) -> None:
        """Submit these entries; ``on_submitted`` hears of each accepted one after it is durable. An account
        error stops the submissions and is raised (as ``BatchHalt``) once the calls in flight have returned; so is
        a refused write (``StateStoreRefusedError``), after what it left unrecorded was handed over."""
        round_ = _SubmitRound(self, keys, on_submitted)
        try:
            await asyncio.gather(*(round_.slot() for _ in range(min(self.concurrency, len(keys)))))
            if round_.crashed:
                raise round_.crashed[0]
            if round_.refused:
                raise round_.refused[0]
        finally:  # every accepted submission is in the log, even when the account stops the batch
            round_.group.flush()
            if round_.accepted:
                self.log.info(
                    "Submitted %d requests to %s (%d waiting at fal)",
                    round_.accepted,
                    self.endpoint.endpoint_id,
                    len(self.state.in_state("submitted")),
                )
        if round_.stop:
            raise BatchHalt(round_.stop[0], final=True)

    async def hand_over(self, entry: BatchEntry, refusal: StateStoreRefusedError) -> None:
        """fal created ``entry``'s request but this try can no longer record it: leave it running and hand it to
        the next try through the task's folder; cancel it only when that fails (no try could ever see it)."""
        from airflow_provider_sam3.batch.cancels import cancel_all
        from airflow_provider_sam3.batch.polling import entry_reference

        reference = entry_reference(self.state, entry)
        try:
            where = await asyncio.to_thread(self.ledger.hand_over, entry, reference, self.try_number)
        except Exception as error:  # noqa: BLE001 - the request must not run unseen: cancel it instead
            outcomes = await cancel_all(self.hook, [reference], budget_seconds=UNRECORDED_CANCEL_SECONDS)
            outcome = outcomes.get(reference.request_id, f"no answer within {UNRECORDED_CANCEL_SECONDS:.0f} s")
            self.log.warning(
                "images[%d]'s request %s could not be saved in the task state store, nor handed to the next try "
                "through %s (%s); cancelled it at fal so that no try pays for a request it cannot see: %s",
                entry.index,
                reference.request_id,
                self.ledger.folder,
                error,
                outcome,
            )
            return
        self.log.warning(
            "images[%d]'s request %s could not be saved in the task state store (it refused %r); it was left "
            "running at fal and handed to the next try through %s, which fetches its result instead of paying again",
            entry.index,
            reference.request_id,
            refusal.key,
            where,
        )

    async def submit_one(self, entry: BatchEntry) -> Sam3ProviderError | None:
        from airflow_provider_sam3.batch.polling import url_templates_of
        from airflow_provider_sam3.batch.results import worth_resubmitting

        body = await self._body_of(entry)
        if isinstance(body, Sam3ProviderError):
            return body
        if not isinstance(body, dict):  # answered by the result cache, or waits for the request paying for its key
            return None
        if entry.error is not None:  # an attempt after a failure: a resubmission, counted when it is made
            entry.retries += 1
        try:
            deadline = (entry.reserved_at or time.time()) + self.lease  # the reservation's lease bounds the call
            ref = await self.hook.asubmit(self.endpoint.endpoint_id, body, options=self.options, deadline=deadline)
        except Sam3ProviderError as error:
            if isinstance(error, FalSubmitOutcomeUnknownError):
                entry.submissions += 1  # fal may have created (and bills) it: counted, never hidden
                self.log.warning(
                    "fal may have created images[%d]'s request (answer lost), whose id is unknown; "
                    "counted as a submission",
                    entry.index,
                )
            elif isinstance(error, FalUntrustedUrlError):
                entry.submissions += 1  # the queue accepted it; its answer was refused, not the request
                self.log.warning(
                    "images[%d]'s request was created, but the queue's answer was refused (%s); "
                    "counted as a submission",
                    entry.index,
                    error,
                )
            entry.fail(f"submit failed: {error}", type(error).__name__, retryable=worth_resubmitting(error))
            return error
        if self._claimed_already(ref.request_id):
            entry.submissions += 1  # the queue accepted it; its answer cannot be told from another image's
            replayed = FalUntrustedUrlError(
                "fal's queue answered this submit with a request id it gave another image of this batch; the answer "
                "cannot be trusted (a proxy replaying answers?), so this image was not recorded under it",
                endpoint_id=self.endpoint.endpoint_id,
                request_id=ref.request_id,
            )
            self.log.warning("images[%d]: %s", entry.index, replayed)
            entry.fail(f"submit failed: {replayed}", type(replayed).__name__, retryable=False)
            return replayed
        templates = url_templates_of(ref)
        if self.state.url_templates is None:
            self.state.url_templates = templates
        entry.urls = (
            None
            if templates == self.state.url_templates
            else {"status_url": ref.status_url, "response_url": ref.response_url, "cancel_url": ref.cancel_url}
        )
        entry.request_id, entry.submitted_at = ref.request_id, ref.submitted_at
        entry.submissions += 1
        entry.state, entry.error, entry.error_class, entry.retryable = "submitted", None, None, False
        return None

    async def _body_of(self, entry: BatchEntry) -> dict[str, Any] | str | Sam3ProviderError:
        """The image's request body (or the cache's word on it), or the error that kept it from being built."""
        from airflow_provider_sam3.batch.results import worth_resubmitting

        try:
            body = await self.body_for(entry)
        except InputValidationError as error:  # e.g. the file changed since the batch was listed
            entry.fail(str(error), type(error).__name__, state="invalid")
            return error
        except Sam3ProviderError as error:  # uploading the image to fal's storage failed: nothing was submitted
            entry.fail(
                f"uploading the image to fal's storage failed: {error}",
                type(error).__name__,
                retryable=worth_resubmitting(error),
            )
            return error
        return body

    def _claimed_already(self, request_id: str) -> bool:
        """Whether another image of this batch holds ``request_id``; else it is claimed for the caller's image. (The
        ids already recorded are read once: a set, not a scan per submit.)"""
        if self._known_ids is None:
            self._known_ids = {e.request_id for e in self.state.entries.values() if e.request_id}
        if request_id in self._known_ids:
            return True
        self._known_ids.add(request_id)
        return False


class GroupJournal:
    """Journal rows shared by the submit slots ready at about the same moment: a slot whose call returned asks for
    its outcome and its next reservation to be made durable, and waits; the row is written as long after the first
    ask as the last write took (at most ``JOURNAL_GROUP_WINDOW``), so slots whose answers arrive meanwhile share it.
    Nothing is sent before its reservation is durable, as with one row per slot; there are only fewer rows (each a
    blocking round trip to Airflow's task state store)."""

    def __init__(self, state: BatchState, store: Any) -> None:
        self.state = state
        self.store = store
        self.waiting: list[tuple[list[str], asyncio.Future[StateStoreRefusedError | None]]] = []
        self.rows = 0
        self.last_write_seconds = 0.0

    async def commit(self, keys: list[str]) -> StateStoreRefusedError | None:
        """Make ``keys``' entries durable with the others asked for now; the refusal, if the store refused."""
        loop = asyncio.get_running_loop()
        if not self.waiting:
            loop.call_later(min(self.last_write_seconds, JOURNAL_GROUP_WINDOW), self.write)
        done: asyncio.Future[StateStoreRefusedError | None] = loop.create_future()
        self.waiting.append((keys, done))
        return await done

    def write(self) -> None:
        """One journal row per ``JOURNAL_GROUP`` entries asked for since the last write, none after a refused one; a
        waiter hears the refusal only if one of its entries is not durable."""
        waiting, self.waiting = self.waiting, []
        keys = list(dict.fromkeys(key for asked, _ in waiting for key in asked))
        durable: set[str] = set()
        refusal: StateStoreRefusedError | None = None
        failure: Exception | None = None
        started = time.perf_counter()
        try:
            for start in range(0, len(keys), JOURNAL_GROUP):
                row = keys[start : start + JOURNAL_GROUP]
                self.state.journal(self.store, *row)
                durable.update(row)
                self.rows += 1
        except StateStoreRefusedError as error:
            refusal = error
        except Exception as error:  # noqa: BLE001 - raised in each waiting slot, as a write of its own would be
            failure = error
        self.last_write_seconds = time.perf_counter() - started
        for asked, done in waiting:
            if done.done():  # its slot was cancelled
                continue
            if durable.issuperset(asked):
                done.set_result(None)
            elif failure is not None:
                done.set_exception(failure)
            else:
                done.set_result(refusal)

    def flush(self) -> None:
        """Write what is still asked for now (the round is ending, e.g. cancelled: the scheduled write may never
        run)."""
        if self.waiting:
            self.write()


class _SubmitRound:
    """One ``Submitter.submit``: slots that share one iterator of due images, each reserving its next image in
    the same journal write that records its last submission, so nothing is sent without a durable reservation."""

    def __init__(self, submitter: Submitter, keys: list[str], on_submitted: Callable[[list[BatchEntry]], None]):
        self.submitter = submitter
        self.state = submitter.state
        self.due = iter(keys)
        self.on_submitted = on_submitted
        self.stop: list[Sam3ProviderError] = []
        self.crashed: list[BaseException] = []
        self.refused: list[StateStoreRefusedError] = []
        self.accepted = 0
        self.group = GroupJournal(submitter.state, submitter.store)

    def reserve_next(self) -> str | None:
        """The next image to send, reserved in memory (the caller's journal row makes it durable)."""
        if self.stop or self.crashed or self.refused or self.submitter.halted():
            return None
        key = next(self.due, None)
        if key is not None:
            entry = self.state.entries[key]
            entry.state, entry.reserved_at = "sending", time.time()
        return key

    def unreserve(self, key: str | None) -> None:
        """A reservation that never became durable: the image was not sent and goes back in line."""
        if key is not None:
            self.state.entries[key].state = "pending"

    async def journal(self, *keys: str | None) -> StateStoreRefusedError | None:
        """Make these entries durable in the task state store (in one row with those of the other slots ready at
        the same moment); the refusal, if the store refused."""
        refusal = await self.group.commit([key for key in keys if key is not None])
        if refusal is not None:
            self.refused.append(refusal)
        return refusal

    async def slot(self) -> None:
        """Submit one image after another until none is due or the round stops."""
        key = self.reserve_next()
        if key is None:
            return
        if await self.journal(key) is not None:
            self.unreserve(key)
            return
        while key is not None:
            entry = self.state.entries[key]
            try:
                outcome = await self.submitter.submit_one(entry)
            except BaseException as error:  # the other slots finish their calls in flight, then it is raised
                self.crashed.append(error)  # the entry stays ``sending``: a later try resolves its reservation
                return
            finally:
                if self.submitter.after_each is not None:
                    self.submitter.after_each(entry)
            if outcome is not None and type(outcome).__name__ in ACCOUNT_ERRORS and not outcome.retryable:
                self.stop.append(outcome)  # before the next reservation: nothing more is sent with this account
            following = self.reserve_next()
            refusal = await self.journal(key, following)
            if refusal is not None:
                self.unreserve(following)
                if entry.state == "submitted":
                    await self.submitter.hand_over(entry, refusal)
                return
            if outcome is None and entry.state == "submitted":
                self.accepted += 1
                self.on_submitted([entry])
            key = following
