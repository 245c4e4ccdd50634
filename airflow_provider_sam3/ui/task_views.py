"""Which page a task instance gets: a single image's result, a batch's (finished or still running), a request
still at fal, or "not a SAM 3 task", decided from what the task stored, never from its name alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sam3.ui.records import ReadOnlyStore, TaskRecord

__all__ = ["BatchView", "OtherView", "RunningBatchView", "SingleView", "TaskView", "WaitingView", "view_of"]


@dataclass
class SingleView:
    """A single-image task that returned its result document."""

    record: TaskRecord
    document: Any


@dataclass
class BatchView:
    """A batch (or merged shards) that returned its summary; the manifest is read page by page."""

    record: TaskRecord
    summary: dict[str, Any]
    results: Any


@dataclass
class RunningBatchView:
    """A batch still running or deferred: its progress from the entries it journalled so far."""

    record: TaskRecord
    endpoint_id: str
    counts: dict[str, int]
    images: int
    estimate_usd: float | None
    billed: int


@dataclass
class WaitingView:
    """A single-image task whose request is recorded but whose result is not back yet."""

    record: TaskRecord
    request: dict[str, Any]


@dataclass
class OtherView:
    """Anything else: another operator, a task that stored nothing yet, or a value that is not a SAM 3 result."""

    record: TaskRecord
    reasons: list[str] = field(default_factory=list)


TaskView = SingleView | BatchView | RunningBatchView | WaitingView | OtherView


def view_of(record: TaskRecord) -> TaskView:
    """The page for this task instance (see the module docstring)."""
    from airflow_provider_sam3.batch.state import STATE_KEY as BATCH_KEY
    from airflow_provider_sam3.batch.summary import BATCH_SUMMARY_KIND
    from airflow_provider_sam3.operators.merge import MERGED_SUMMARY_KIND
    from airflow_provider_sam3.operators.reattach import STATE_KEY as REQUEST_KEY

    returned, store = record.returned, record.store or {}
    if isinstance(returned, dict) and returned.get("kind") in (BATCH_SUMMARY_KIND, MERGED_SUMMARY_KIND):
        return _batch(record, returned)
    if isinstance(returned, dict) and str(returned.get("kind", "")).startswith("sam3."):
        return _single(record, returned)
    if BATCH_KEY in store:
        return _running_batch(record, store)
    if isinstance(store.get(REQUEST_KEY), dict):
        return WaitingView(record, store[REQUEST_KEY])
    return OtherView(record)


def _batch(record: TaskRecord, summary: dict[str, Any]) -> TaskView:
    from airflow_provider_sam3.exceptions import Sam3ProviderError
    from airflow_provider_sam3.storage.batch_results import BatchResults

    try:
        return BatchView(record, summary, BatchResults.from_xcom(summary))
    except (Sam3ProviderError, ValueError) as error:
        return OtherView(record, [f"its batch summary names no readable manifest: {error}"])


def _single(record: TaskRecord, returned: dict[str, Any]) -> TaskView:
    from airflow_provider_sam3.exceptions import Sam3ProviderError
    from airflow_provider_sam3.models.results import result_from_xcom

    try:
        return SingleView(record, result_from_xcom(returned))
    except (Sam3ProviderError, ValueError) as error:
        return OtherView(record, [f"its returned value is not a result document this version reads: {error}"])


def _running_batch(record: TaskRecord, rows: dict[str, Any]) -> TaskView:
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.exceptions import Sam3ProviderError

    try:
        state = BatchState.load(ReadOnlyStore(rows))
    except (Sam3ProviderError, ValueError, KeyError, TypeError) as error:
        return OtherView(record, [f"its batch journal could not be read: {error!r}"])
    if state is None:
        return OtherView(record)
    entries = state.ordered()
    return RunningBatchView(
        record,
        endpoint_id=state.endpoint_id,
        counts=state.counts(),
        images=len(entries),
        estimate_usd=state.estimate_usd,
        billed=sum(e.billed for e in entries),
    )
