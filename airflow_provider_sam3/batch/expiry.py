"""The batch's deadline: what waits at fal is cancelled (newest first: the queued tail would run and be billed),
what was not submitted gives up for this try, and each cancel's outcome is settled: a request fal completed anyway
is paid, so its result is still fetched."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.ports import FalQueue, KeyValueStore
    from airflow_provider_sam3.batch.state import BatchState

__all__ = ["expire", "settle_cancelled"]


async def expire(queue: FalQueue, state: BatchState, by_request: dict[str, str], store: KeyValueStore | None) -> None:
    """The batch's timeout passed: cancel what is at fal, and give up on what was not submitted. Results fal
    completed are still fetched (they are paid). ``by_request``: entry key by request id."""
    from airflow_provider_sam3.batch.cancels import cancel_all
    from airflow_provider_sam3.batch.polling import entry_reference

    waiting = state.in_state("submitted")
    newest_first = [entry_reference(state, e) for e in reversed(waiting)]
    outcomes = await cancel_all(queue, newest_first) if waiting else {}
    await settle_cancelled(queue, state, by_request, outcomes)
    for key, entry in state.entries.items():
        if entry.state == "pending":  # nothing paid: a later try (a retry or a clear) may submit it
            entry.fail(
                "the batch's timeout passed before this image was submitted",
                "FalDeadlineExceededError",
                retryable=True,
            )
            state.touch(key)
    state.save(store)


async def settle_cancelled(
    queue: FalQueue, state: BatchState, by_request: dict[str, str], outcomes: dict[str, str]
) -> None:
    """Requests the batch's timeout cancelled. A cancel fal confirmed leaves nothing to pay: a later try may
    submit the image again. Any other answer (fal had finished it, or the cancel failed) is checked once: a
    completed request is paid and its result is fetched; a failed one fails as fal says."""
    from airflow_provider_sam3.batch.polling import entry_reference
    from airflow_provider_sam3.batch.results import completed_error, worth_resubmitting
    from airflow_provider_sam3.exceptions import Sam3ProviderError

    for request_id, outcome in outcomes.items():
        key = by_request.get(request_id)
        if key is None or state.entries[key].state != "submitted":
            continue
        entry = state.entries[key]
        state.touch(key)
        status = None
        if outcome != "CANCELLATION_REQUESTED":
            try:
                status = await queue.astatus(entry_reference(state, entry))
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
