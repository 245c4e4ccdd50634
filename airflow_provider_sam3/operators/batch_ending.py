"""How a batch task's try ends: finished (manifest, summary, the state store cleared), stopped by an error (every
image listed, the state kept for the retry), or killed (what waits at fal is cancelled)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import FalRequestError

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.batch import BatchEntry

CANCEL_WAIT_SECONDS = 25
"""How long ``on_kill`` waits for fal's answers to its cancels (Airflow gives it 30 s)."""


def cancel_entries(fal_conn_id: str, state: BatchState, entries: list[BatchEntry], log: Any) -> None:
    """Cancel these entries' requests at fal, newest first (the queued tail is what would run and be billed). Runs
    its own event loop in a thread, so it also works from ``on_kill`` while the task's loop is running."""
    from airflow_provider_sam3.batch.polling import entry_reference

    submitted = [entry for entry in entries if entry.state == "submitted" and entry.request_id]
    refs = [entry_reference(state, entry) for entry in reversed(submitted)]
    if not refs:
        return
    from airflow_provider_sam3.batch.polling import cancel_in_a_thread
    from airflow_provider_sam3.hooks.fal import FalHook

    hook = FalHook(fal_conn_id)
    try:
        hook.get_settings()  # here: the thread that cancels must not talk to the task supervisor
    except Exception as error:  # noqa: BLE001 - on_kill must not raise; say why nothing was cancelled
        log.warning("Could not cancel this batch's %d requests at fal: %s", len(refs), error)
        return
    outcomes = cancel_in_a_thread(hook, refs, budget_seconds=CANCEL_WAIT_SECONDS)
    log.info("Sent %d cancels to fal for the %d requests of this batch at fal", len(outcomes), len(refs))


def write_stopped_manifest(state: BatchState, folder: Any, reason: str, log: Any) -> None:
    """The try fails before the batch's end: list every image anyway. The state is kept, so a retry (or a clear,
    once the cause is fixed) goes on without paying again for what was submitted."""
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
    store: Any, endpoint: Endpoint, state: BatchState, folder: Any, on_image_failure: str, log: Any
) -> dict[str, Any]:
    """Every image is final: write the manifest, log the summary and return it; with ``on_image_failure="fail"``
    and images without a result, fail the task instead (retrying only when a retry could change something)."""
    from airflow_provider_sam3.batch.manifest import remove_parts, write_manifest
    from airflow_provider_sam3.batch.summary import build_summary
    from airflow_provider_sam3.operators.completion import as_task_error

    manifest = write_manifest(folder, state.ordered(), keep_parts=True)  # may find rows lost since: count after
    summary = build_summary(endpoint, state, folder, manifest)
    log.info(
        "Batch finished: %d of %d images succeeded, %d failed, %d invalid; %d submissions (%d resubmissions); "
        "fal bills %d completed requests: %s (estimated %s); manifest: %s",
        summary["succeeded"],
        summary["images"],
        summary["failed"],
        summary["invalid"],
        summary["submissions"],
        summary["resubmissions"],
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
    state.summary = summary  # first: a crash in the clean-up below returns this summary on the retry
    state.save(store)
    remove_parts(folder)
    state.forget(store)
    return summary
