"""Never pay twice: a task's request in the task state store, and what a new try does with it.

A mixin of ``FalQueueOperator`` (split from ``operators/queue.py``). The record under ``STATE_KEY`` goes through
three stages, each written before the next step:

1. **reserved** (``reserved_at``, no reference): written before the submit. A refused write (Airflow failed,
   cleared or replaced this try) stops the try before anything is sent.
2. **submitted** (``reference``): written as soon as fal answers. A refused write cancels the request at once
   (this try cannot record it, so no try could ever fetch it). A later try reattaches: it waits again, or fetches
   a result fal already finished.
3. **finished** (``finished``, the run's ``epoch``): the task's result document (or, without waiting, the
   reference), kept after the task returns it. A later try of the same run (Airflow can fail a try after it
   finished) returns it without paying again; a try after a clear of the run starts afresh.

A reservation left without a reference means a try stopped while its submit was in flight: the next try waits
until that submit can no longer be in flight (its lease: ``FalSettings.submit_lease``), then submits anew,
saying that fal may have created a request nobody can see.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalRequestNotFoundError, Sam3ProviderError, StateStoreRefusedError
from airflow_provider_sam3.links import LINK_XCOM_KEY, request_link
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.fetched_results import raise_task_error
from airflow_provider_sam3.storage.state_store import delete_parts, get_parts, guarded, put_parts, run_epoch

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

    from airflow_provider_sam3.exceptions import FalRequestCancelledError
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.operators.request_bodies import PreparedRequest

__all__ = [
    "ANSWER_LOST",
    "CANCEL_RESUBMITS",
    "MAX_CANCEL_RESUBMITS",
    "RESERVATION_GRACE_SECONDS",
    "RESULT_GONE",
    "STATE_KEY",
    "ReattachingSubmit",
]

STATE_KEY = "fal_request"
RESULT_GONE = "result_gone"
"""Set in the saved record when fetching its result found it gone: the next try submits anew."""
CANCEL_RESUBMITS = "cancel_resubmits"
ANSWER_LOST = "answer_lost"
"""Set when a submit's answer was lost: fal may have created a request nobody can see; the next try sends anew."""
MAX_CANCEL_RESUBMITS = 3
"""Times one try submits anew after finding its request cancelled (a clear racing its own trigger's cancel)."""
RESERVATION_GRACE_SECONDS = 5.0
"""Added to a reservation's lease before a new try treats its submit as over."""


class ReattachingSubmit:
    """``_reattach_or_submit`` and its helpers (``FalQueueOperator`` provides ``log`` and ``execute``)."""

    if TYPE_CHECKING:

        @property
        def log(self) -> Logger: ...

        def execute(self, context: Any) -> Any: ...

    def _finished_before(self, context: Any, request: PreparedRequest) -> Any:
        """What an earlier try of this run returned for this same request (Airflow failed that try after it
        finished), or ``None``. A record from before a clear of the run is removed: the clear asks for a new run."""
        store = guarded(context.get("task_state_store"))
        record = store.get(STATE_KEY) if store is not None else None
        if not record or not record.get("finished"):
            return None
        if record.get("epoch") != run_epoch(context) or record.get("fingerprint") != request.fingerprint:
            self._forget(context)
            return None
        value = get_parts(store, STATE_KEY, int(record.get("parts") or 0))
        if value is None:
            self.log.warning("The result an earlier try of this run kept is incomplete; running the request again")
            self._forget(context)
            return None
        self.log.info(
            "Request %s finished in an earlier try of this run; returning its result without paying again",
            (record.get("reference") or {}).get("request_id"),
        )
        return value

    def _keep_finished(self, context: Any, reference: RequestReference, value: Any) -> None:
        """Keep what this try returns, for a later try of the same run (see the module docstring)."""
        store = guarded(context.get("task_state_store"))
        if store is None:
            return
        fingerprint = (store.get(STATE_KEY) or {}).get("fingerprint")
        parts = put_parts(store, STATE_KEY, value)
        store.set(
            STATE_KEY,
            {
                "finished": True,
                "epoch": run_epoch(context),
                "fingerprint": fingerprint,
                "reference": reference.to_dict(),
                "parts": parts,
            },
        )

    def _reattach_or_submit(
        self, context: Any, hook: FalHook, request: PreparedRequest
    ) -> tuple[RequestReference, QueueStatus | None]:
        """The request to wait for: a previous try's (with its status when it already completed), or a new one."""
        store = guarded(context.get("task_state_store"))
        record = store.get(STATE_KEY) if store is not None else None
        if record and record.get(RESULT_GONE) == "cancelled":
            pass  # _submit_anew_after_cancel said why
        elif record and record.get(RESULT_GONE):
            self.log.warning(
                "The result of request %s from a previous try is gone at fal (expired); submitting anew",
                record["reference"].get("request_id"),
            )
        elif record and record.get("reference"):
            reference = RequestReference.from_dict(record["reference"])
            status = self._can_reattach(hook, reference, record.get("fingerprint"), request)
            if status is not None:
                self._publish_link(context, hook, reference)
                return reference, (status if status.done else None)
        elif record and record.get(ANSWER_LOST):
            self.log.warning(
                "An earlier try's submit lost fal's answer: fal may have created a request nobody can see (and may "
                "bill it). Sending the request again"
            )
        elif record and record.get("reserved_at"):
            self._wait_for_unrecorded_submit(record)
        reference = self._submit_reserved(store, hook, request, record)
        self._publish_link(context, hook, reference)
        return reference, None

    def _submit_reserved(
        self, store: Any, hook: FalHook, request: PreparedRequest, record: dict[str, Any] | None
    ) -> RequestReference:
        """Reserve, submit, record: nothing is sent unless the reservation is durable, and a request this try cannot
        record is cancelled at once."""
        lease = hook.get_settings().submit_lease
        reserved_at = time.time()
        kept = {"fingerprint": request.fingerprint, CANCEL_RESUBMITS: (record or {}).get(CANCEL_RESUBMITS)}
        if store is not None:
            try:
                store.set(STATE_KEY, {**kept, "reserved_at": reserved_at, "lease": lease})
            except StateStoreRefusedError as refused:
                raise_task_error(refused)
        try:
            reference = hook.submit(
                request.endpoint_id, request.body, options=request.options, deadline=reserved_at + lease
            )
        except Sam3ProviderError as error:
            from airflow_provider_sam3.exceptions import FalSubmitOutcomeUnknownError

            lost = isinstance(error, FalSubmitOutcomeUnknownError)
            if lost:
                self.log.warning(
                    "fal may have created a %s request (answer lost), whose id is unknown: it was not "
                    "resubmitted, and a retry of this task cannot reattach to it but submits a new one",
                    request.endpoint_id,
                )
            self._end_reservation(store, {**kept, ANSWER_LOST: True} if lost else kept)
            raise_task_error(error)
        if store is None:
            self.log.warning(
                "No task state store in this context: a retry cannot reattach to request %s", reference.request_id
            )
            return reference
        try:
            store.set(STATE_KEY, {**kept, "reference": reference.to_dict()})
        except StateStoreRefusedError as refused:
            self._cancel_quietly(hook, reference)
            self.log.warning(
                "Request %s could not be saved in the task state store; it was cancelled at fal so that no try "
                "pays for a request it cannot see",
                reference.request_id,
            )
            raise_task_error(refused)
        return reference

    def _end_reservation(self, store: Any, record: dict[str, Any]) -> None:
        """The submit is over without a request to record: say so, so that the next try does not wait for it."""
        if store is None:
            return
        try:
            store.set(STATE_KEY, record)
        except StateStoreRefusedError as refused:  # the submit's own error is the one to raise
            self.log.warning("%s", refused)

    def _wait_for_unrecorded_submit(self, record: dict[str, Any]) -> None:
        """An earlier try reserved a submit and never recorded fal's answer: it stopped while the call was in
        flight. Wait until that call can no longer be in flight, then say what it means."""
        over_at = float(record["reserved_at"]) + float(record.get("lease") or 0) + RESERVATION_GRACE_SECONDS
        left = over_at - time.time()
        if left > 0:
            self.log.warning(
                "An earlier try was submitting this request when it stopped; waiting %.0f s until that submit can "
                "no longer be in flight before submitting anew",
                left,
            )
            time.sleep(left)
        self.log.warning(
            "An earlier try stopped while submitting this request and left no record of fal's answer: fal may have "
            "created a request nobody can see (and may bill it). Sending the request again"
        )

    def _can_reattach(
        self, hook: FalHook, reference: RequestReference, fingerprint: str | None, request: PreparedRequest
    ) -> QueueStatus | None:
        """The previous try's request status if this try can use it; None when a new request is needed."""
        rid = reference.request_id
        if fingerprint != request.fingerprint:
            self.log.warning(
                "The request changed since a previous try submitted %s; cancelling that one and "
                "submitting the new request",
                rid,
            )
            self._cancel_quietly(hook, reference)
            return None
        try:
            status = hook.status(reference)
        except FalRequestNotFoundError:
            self.log.warning("A previous try's request %s is gone at fal (expired or vanished); submitting anew", rid)
            return None
        except Sam3ProviderError as error:
            raise_task_error(error)
        if not status.done:
            self.log.info(
                "Reattaching to request %s from a previous try (%s); not submitting again", rid, status.describe()
            )
            return status
        if status.error is None:
            self.log.info(
                "Request %s from a previous try already completed; fetching its result instead of paying again", rid
            )
            return status
        self.log.warning("Request %s from a previous try failed (%s); submitting anew", rid, status.error)
        return None

    def _cancel_quietly(self, hook: FalHook, reference: RequestReference) -> None:
        try:
            hook.cancel(reference)
        except Sam3ProviderError as error:
            self.log.warning("Could not cancel request %s: %s", reference.request_id, error)

    def _cancel_if_queued(self, hook: FalHook, reference: RequestReference) -> None:
        """From ``on_kill`` (a signal handler): cancel the request if it is still queued at fal; one already running
        is billed whatever happens, so it is left to finish for a later try (a clear reattaches to it). Bounded by
        Airflow's SIGKILL 5 s later; never talks to the task supervisor; never raises (an exception in a signal
        handler lands in whatever code it interrupted)."""
        from airflow_provider_sam3.batch.cancels import WORKER_ON_KILL_SECONDS, cancel_queued_in_a_thread

        try:
            report = cancel_queued_in_a_thread(hook.detached_copy(), [reference], budget_seconds=WORKER_ON_KILL_SECONDS)
            self.log.info("Task was killed; %s", report.describe_one(reference.request_id))
        except Exception as error:  # noqa: BLE001 - see the docstring
            self.log.warning("Could not cancel request %s: %s", reference.request_id, error)

    def _forget(self, context: Any) -> None:
        store = guarded(context.get("task_state_store"))
        if store is None:
            return
        record = store.get(STATE_KEY)
        if record and record.get("parts"):
            delete_parts(store, STATE_KEY, int(record["parts"]))
        store.delete(STATE_KEY)

    def _publish_link(self, context: Any, hook: FalHook, reference: RequestReference) -> None:
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=LINK_XCOM_KEY, value=request_link(hook.get_settings().queue_host, reference.request_id))

    def _mark_result_gone(self, context: Any) -> None:
        """The result expired (or the request vanished) after fal finished it: reattaching would fetch the same
        missing result forever, so the next try is told to submit anew."""
        store = guarded(context.get("task_state_store"))
        record = store.get(STATE_KEY) if store is not None else None
        if store is not None and record:
            store.set(STATE_KEY, {**record, RESULT_GONE: True})

    def _submit_anew_after_cancel(self, context: Any, error: FalRequestCancelledError) -> Any:
        """The request was cancelled before it finished: by the cancel of an earlier try that a clear stopped
        (which can land after this try reattached to it), or by someone at fal. The task still wants the result,
        and fal does not bill a cancelled request, so the image is submitted anew (a few times per try at most)."""
        store = guarded(context.get("task_state_store"))
        record = store.get(STATE_KEY) if store is not None else None
        try_number = getattr(context.get("ti"), "try_number", None)
        done_in_try, count = (record or {}).get(CANCEL_RESUBMITS) or [None, 0]
        count = count if done_in_try == try_number else 0
        if store is None or not record or count >= MAX_CANCEL_RESUBMITS:
            raise error
        self.log.warning(
            "Request %s was cancelled at fal before it finished (the cancel of an earlier try that "
            "was cleared, or a cancel at fal); submitting the image anew (%d of %d in this try)",
            error.request_id,
            count + 1,
            MAX_CANCEL_RESUBMITS,
        )
        store.set(STATE_KEY, {**record, RESULT_GONE: "cancelled", CANCEL_RESUBMITS: [try_number, count + 1]})
        return self.execute(context)
