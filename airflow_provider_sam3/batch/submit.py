"""Submitting a batch's images to fal: ``submit_concurrency`` calls in flight (a sliding window, so one slow call
holds back nobody), each request made durable in the task state store the moment its submit call returns.

What stays unknowable is only the call in flight when the worker dies: fal may have created that request, and fal
has no idempotency key to find it again. The window is one submit call per slot, at most ``submit_concurrency``.
A request fal created but the store refused to record (the task instance was taken away, the API server is down) is
cancelled at once: no later try would know its id, so it must not run and be billed unseen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import (
    FalSubmitOutcomeUnknownError,
    FalUntrustedUrlError,
    InputValidationError,
    Sam3ProviderError,
)

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.batch import BatchEntry
    from airflow_provider_sam3.batch.state import BatchState

UNRECORDED_CANCEL_SECONDS = 10.0
"""How long cancelling a request that could not be recorded may take before the batch stops anyway."""

ACCOUNT_ERRORS = ("FalAuthenticationError", "FalBalanceExhaustedError", "FalUntrustedUrlError")
"""Errors that stop the whole batch: no other image could be submitted or fetched with this key (or through this
queue host: one that answers with another host's URLs answers every submit that way)."""


class Submitter:
    """Submits pending entries in input order and records each outcome in the entry and the state store.

    :param options: fal's queue options for every submit (``models.submit_options.SubmitOptions``), or None.
    :param body_for: ``async (entry) -> request body``, built when the image's turn comes: at most one body per
        slot exists at a time, so memory does not grow with the batch.
    :param after_each: called with each entry once its submit call returned (its body is then garbage).
    """

    def __init__(
        self,
        hook: FalHook,
        endpoint: Endpoint,
        state: BatchState,
        store: Any,
        *,
        concurrency: int,
        options: Any,
        body_for: Callable[[BatchEntry], Awaitable[Any]],
        log: Any,
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
        self.after_each = after_each

    async def submit(self, keys: list[str], on_submitted: Callable[[list[BatchEntry]], None]) -> None:
        """Submit these entries; ``on_submitted`` hears of each accepted one after it is durable. An account
        error stops the submissions and is raised (as ``BatchHalt``) once the calls in flight have returned."""
        from airflow_provider_sam3.batch.engine import BatchHalt

        due = iter(keys)
        stop: list[Sam3ProviderError] = []
        crashed: list[BaseException] = []
        accepted = 0

        async def slot() -> None:
            nonlocal accepted
            for key in due:  # one shared iterator: each slot takes the next image when its call returns
                if stop or crashed:
                    return
                entry = self.state.entries[key]
                if entry.error is not None:  # an attempt after a failure: a resubmission, counted when it is made
                    entry.retries += 1
                before = entry.submissions
                try:
                    outcome = await self._submit_one(entry)
                    if entry.submissions != before:
                        await self._record_or_cancel(entry, key)
                    else:
                        self.state.touch(key)  # a refusal is saved too, so no later stay sends it again
                except BaseException as error:  # the other slots finish their calls in flight, then it is raised
                    crashed.append(error)
                    return
                finally:
                    if self.after_each is not None:
                        self.after_each(entry)
                if outcome is None:
                    accepted += 1
                    on_submitted([entry])
                elif type(outcome).__name__ in ACCOUNT_ERRORS and not outcome.retryable:
                    stop.append(outcome)

        try:
            await asyncio.gather(*(slot() for _ in range(min(self.concurrency, len(keys)))))
            if crashed:
                raise crashed[0]
        finally:  # every accepted submission is in the log, even when the account stops the batch
            if accepted:
                self.log.info(
                    "Submitted %d requests to %s (%d waiting at fal)",
                    accepted,
                    self.endpoint.endpoint_id,
                    len(self.state.in_state("submitted")),
                )
        if stop:
            raise BatchHalt(stop[0], final=True)

    async def _record_or_cancel(self, entry: BatchEntry, key: str) -> None:
        """Make the submission durable; if the store refuses, cancel the request fal just created (only this try
        knows its id), say so, and raise the store's error."""
        try:
            self.state.record_submission(self.store, key)
        except Exception as error:
            if entry.state != "submitted" or not entry.request_id:
                raise
            from airflow_provider_sam3.batch.polling import cancel_all, entry_reference

            request_id = entry.request_id
            ref = entry_reference(self.state, entry)
            outcomes = await cancel_all(self.hook, [ref], budget_seconds=UNRECORDED_CANCEL_SECONDS)
            outcome = outcomes.get(request_id, f"no answer within {UNRECORDED_CANCEL_SECONDS:.0f} s")
            self.log.warning(
                "images[%d]'s request %s could not be saved in the task state store (%s); cancelled it at fal so "
                "that no try pays for a request it cannot see: %s",
                entry.index,
                request_id,
                error,
                outcome,
            )
            entry.fail(
                f"its request {request_id} could not be saved in the task state store and was cancelled at fal "
                f"({outcome}): {error}",
                type(error).__name__,
                retryable=True,
                state="pending",  # back in line: its next attempt counts as a resubmission
            )
            raise

    async def _submit_one(self, entry: BatchEntry) -> Sam3ProviderError | None:
        from airflow_provider_sam3.batch.results import worth_resubmitting
        from airflow_provider_sam3.batch.polling import url_templates_of

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
        try:
            ref = await self.hook.asubmit(self.endpoint.endpoint_id, body, options=self.options)
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
