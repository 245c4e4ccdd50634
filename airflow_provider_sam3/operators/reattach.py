"""Never pay twice: a task's request reference in the task state store, and what a new try does with it.

A mixin of ``FalQueueOperator`` (split from ``operators/queue.py``): reattach to the request a previous try saved
(waiting again, or fetching a result fal already finished), or submit and save the reference at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalRequestNotFoundError, Sam3ProviderError
from airflow_provider_sam3.links import LINK_XCOM_KEY, request_link
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.completion import raise_task_error

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.status import QueueStatus
    from airflow_provider_sam3.operators.prepared import PreparedRequest

STATE_KEY = "fal_request"
RESULT_GONE = "result_gone"
"""Set in the saved record when fetching its result found it gone: the next try submits anew."""
CANCEL_RESUBMITS = "cancel_resubmits"


class ReattachingSubmit:
    """``_reattach_or_submit`` and its helpers (``FalQueueOperator`` provides ``log``)."""

    if TYPE_CHECKING:

        @property
        def log(self) -> Logger: ...

    def _reattach_or_submit(
        self, context: Any, hook: FalHook, request: PreparedRequest
    ) -> tuple[RequestReference, QueueStatus | None]:
        """The request to wait for: a previous try's (with its status when it already completed), or a new one."""
        store = context.get("task_state_store")
        record = store.get(STATE_KEY) if store is not None else None
        if record and record.get(RESULT_GONE) == "cancelled":
            pass  # _submit_anew_after_cancel said why
        elif record and record.get(RESULT_GONE):
            self.log.warning(
                "The result of request %s from a previous try is gone at fal (expired); submitting anew",
                record["reference"].get("request_id"),
            )
        elif record:
            reference = RequestReference.from_dict(record["reference"])
            status = self._can_reattach(hook, reference, record.get("fingerprint"), request)
            if status is not None:
                self._publish_link(context, hook, reference)
                return reference, (status if status.done else None)
        try:
            reference = hook.submit(request.endpoint_id, request.body, options=request.options)
        except Sam3ProviderError as error:
            from airflow_provider_sam3.exceptions import FalSubmitOutcomeUnknownError

            if isinstance(error, FalSubmitOutcomeUnknownError):
                self.log.warning(
                    "fal may have created a %s request (answer lost), whose id is unknown: it was not "
                    "resubmitted, and a retry of this task cannot reattach to it but submits a new one",
                    request.endpoint_id,
                )
            raise_task_error(error)
        if store is not None:
            store.set(
                STATE_KEY,
                {
                    "reference": reference.to_dict(),
                    "fingerprint": request.fingerprint,
                    CANCEL_RESUBMITS: (record or {}).get(CANCEL_RESUBMITS),
                },
            )
        else:
            self.log.warning(
                "No task state store in this context: a retry cannot reattach to request %s", reference.request_id
            )
        self._publish_link(context, hook, reference)
        return reference, None

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

    def _forget(self, context: Any) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.delete(STATE_KEY)

    def _publish_link(self, context: Any, hook: FalHook, reference: RequestReference) -> None:
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=LINK_XCOM_KEY, value=request_link(hook.get_settings().queue_host, reference.request_id))
