"""How a batch task's try starts: from what an earlier try of the run left in the task state store.

Never pay twice: the image list of the run's first try is used as it is (the images are not listed again), nothing
an earlier try submitted is submitted again, and a batch that already finished returns its summary, unless the run
was cleared since (its clear count, the ``epoch``, changed): a clear asks for a new result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.batch.state import BatchState
from airflow_provider_sam3.operators.batch_finish import CANCEL_WAIT_SECONDS, cancel_entries

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint

__all__ = ["earlier_batch", "finished_summary"]


def earlier_batch(store: Any, endpoint: Endpoint, fal_conn_id: str, log: Any) -> BatchState | None:
    """The batch an earlier try (or a cleared run) of this task left, or ``None`` to start one. A batch an earlier
    try ran on another endpoint is cancelled and forgotten."""
    previous = BatchState.load(store)
    if previous is None or previous.summary is not None:
        return previous
    if previous.endpoint_id != endpoint.endpoint_id:
        log.warning(
            "A previous try ran this batch on %s; cancelling its requests and starting on %s",
            previous.endpoint_id,
            endpoint.endpoint_id,
        )
        from airflow_provider_sam3.hooks.fal import FalHook

        hook = FalHook(fal_conn_id)
        hook.get_settings()  # here, not in the thread that cancels: it must not talk to the task supervisor
        cancel_entries(hook, previous, previous.in_state("submitted"), log, budget=CANCEL_WAIT_SECONDS)
        previous.forget(store)
        return None
    counts = previous.counts()
    log.info(
        "Resuming this run's batch with the image list of its first try (%d rows; the images parameter is not "
        "listed again): %d images already done, %d still at fal (not submitted again), %d completed at fal and "
        "fetched again (not submitted again), %d being sent when a try stopped (resolved before anything is "
        "sent again), %d failed, %d not submitted yet",
        len(previous.entries),
        counts["done"],
        counts["submitted"],
        counts["completed"],
        counts["sending"],
        counts["failed"],
        counts["pending"],
    )
    return previous


def finished_summary(
    state: BatchState, store: Any, epoch: int | None, log: Any, folder: Any = None
) -> dict[str, Any] | None:
    """The summary of a batch an earlier try of this run finished (Airflow failed that try afterwards: a crash
    while cleaning up, or its scheduler failing it after it finished); nothing is listed, submitted or written
    again, and the summary stays for any later try. ``None`` after a clear of the run: the old batch is forgotten."""
    if state.epoch != epoch:
        log.info("This run was cleared since its batch finished; starting the batch afresh")
        state.forget(store)
        return None
    summary = dict(state.summary or {})
    log.info(
        "This batch finished in an earlier try of this run; returning its summary without paying again (manifest: %s)",
        summary.get("manifest"),
    )
    # What that try could not clean up before Airflow stopped accepting its writes: its rows, part files, ledger.
    state.delete_entries(store)
    if folder is not None:
        from airflow_provider_sam3.batch.manifest import remove_parts
        from airflow_provider_sam3.batch.unrecorded import UnrecordedLedger

        remove_parts(folder)
        UnrecordedLedger(folder).clear()
    return summary
