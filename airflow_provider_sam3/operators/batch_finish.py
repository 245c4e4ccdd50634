"""How a batch task's try ends: finished (manifest, summary, the state store cleared), stopped by an error (every
image listed, the state kept for the retry), or killed (what waits at fal is cancelled)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalRequestError

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = ["CANCEL_WAIT_SECONDS", "cancel_entries", "finish_batch", "stop_batch", "write_stopped_manifest"]

CANCEL_WAIT_SECONDS = 25
"""How long cancelling a previous try's requests may take (a new endpoint: the old requests are useless)."""


def cancel_entries(hook: FalHook, state: BatchState, entries: list[BatchEntry], log: Any, *, budget: float) -> None:
    """Cancel these entries' requests that are still queued at fal, newest first (the queued tail is what would run
    and be billed); a request already running is billed whatever happens, so it is left for a later try to fetch.
    ``hook`` must have its settings resolved (``FalHook.detached_copy``): this runs its own event loop in a thread,
    also from ``on_kill``, a signal handler that must not talk to the task supervisor. Never raises: an exception
    in a signal handler lands in whatever code it interrupted."""
    from airflow_provider_sam3.batch.cancels import cancel_queued_in_a_thread
    from airflow_provider_sam3.batch.polling import entry_reference

    try:
        submitted = sorted(
            (entry for entry in entries if entry.state == "submitted" and entry.request_id),
            key=lambda e: (e.submitted_at or 0, e.index),
        )
        refs = [entry_reference(state, entry) for entry in submitted]
        if refs:
            log.info("%s", cancel_queued_in_a_thread(hook, refs, budget_seconds=budget).describe())
    except Exception as error:  # noqa: BLE001 - see the docstring
        log.warning("Could not cancel this batch's requests at fal: %s", error)


def stop_batch(store: Any, state: BatchState, folder: Any, reason: str, log: Any) -> None:
    """The try fails before the batch's end: save what it knows and list every image anyway. The state is kept,
    so a retry (or a clear, once the cause is fixed) goes on without paying again for what was submitted."""
    from airflow_provider_sam3.exceptions import StateStoreRefusedError

    try:
        state.save(store)
    except StateStoreRefusedError as refused:  # the error that stopped the batch is the one to raise
        log.error("%s", refused)
        return  # the next try may already be running: it writes the manifest
    write_stopped_manifest(state, folder, reason, log)


def write_stopped_manifest(state: BatchState, folder: Any, reason: str, log: Any) -> None:
    """List every image of a batch that stopped early (its state is kept for the retry)."""
    from airflow_provider_sam3.batch.manifest import write_manifest

    try:
        manifest = write_manifest(folder, state.ordered(), keep_parts=True, stopped=reason)
    except Exception as failure:  # noqa: BLE001 - the error that stopped the batch is the one to raise
        log.warning("Could not write the manifest of the stopped batch: %s", failure)
        return
    log.error(
        "The batch stopped: %s. Every image is listed in %s; a retry, or a clear once the cause is fixed, goes on "
        "without paying again for what was already submitted",
        reason,
        manifest,
    )


def finish_batch(
    store: Any,
    endpoint: Endpoint,
    state: BatchState,
    folder: Any,
    on_image_failure: str,
    log: Any,
    *,
    epoch: int | None = None,
) -> dict[str, Any]:
    """Every image is final: write the manifest, log the summary and return it; with ``on_image_failure="fail"``
    and images without a result, fail the task instead (retrying only when a retry could change something)."""
    from airflow_provider_sam3.batch.manifest import remove_parts, write_manifest
    from airflow_provider_sam3.batch.summary import build_summary
    from airflow_provider_sam3.batch.unrecorded import UnrecordedLedger
    from airflow_provider_sam3.operators.fetched_results import as_task_error

    manifest = write_manifest(folder, state.ordered(), keep_parts=True)  # may find rows lost since: count after
    summary = build_summary(endpoint, state, folder, manifest)
    log.info(
        "Batch finished: %d of %d images succeeded, %d failed, %d invalid; %d submissions (%d resubmissions, %d "
        "unseen); fal bills %d completed requests: %s (estimated %s); manifest: %s",
        summary["succeeded"],
        summary["images"],
        summary["failed"],
        summary["invalid"],
        summary["submissions"],
        summary["resubmissions"],
        summary["unseen"],
        summary["billed_requests"],
        f"${summary['cost_usd']:.4f}" if summary["cost_usd"] is not None else "an unpublished price",
        f"${state.estimate_usd:.4f}" if state.estimate_usd is not None else "unknown",
        manifest,
    )
    if on_image_failure == "fail" and summary["unfinished"]:
        state.save(store)
        first = summary["failures"][0]
        missing = [e for e in state.ordered() if state.outcome_of(e).state != "done"]
        final = all(not state.outcome_of(e).retryable for e in missing)
        then = (
            "only final failures remain (rejected input, app errors, invalid images): a retry would not change "
            "them, so the task fails without retrying"
            if final
            else "a retry submits only those images again"
        )
        error = FalRequestError(
            f"{summary['unfinished']} of {summary['images']} images have no result (first: "
            f"images[{first['index']}] {first['source']}: {first['error']}). Every image is listed in {manifest}; "
            f"{then}; set on_image_failure='report' to succeed with failures"
        )
        raise as_task_error(error, retry_useless=final)
    state.epoch = epoch
    state.finish(store, summary)  # first: any later try of this run (until a clear) returns this summary
    remove_parts(folder)
    UnrecordedLedger(folder).clear()
    return summary
