"""Submits a try could not record: handed to the next try through the task's own folder, or resolved by waiting.

Nothing is sent without a durable reservation (``sending`` in the task state store). When Airflow stops accepting a
try's writes while a submit is in flight (the scheduler failed the try, a clear replaced it, its supervisor died),
fal may answer with a request id the try can no longer record. The task state store is closed to that try, but its
own folder under ``output_path`` is not: the try leaves one small JSON file per such request in
``<folder>/_unrecorded/`` and lets the request run. The next try adopts it (waits for it and fetches its result:
paid once) instead of sending the image again. Only when that file cannot be written is the request cancelled at
once (fal removes it while it is still queued).

A reservation nobody answered (the try died mid-call, SIGKILL) is resolved once that submit can no longer be in
flight: ``lease`` seconds (``FalSettings.submit_lease``, the submit's own bound) plus ``HAND_OVER_GRACE_SECONDS``
after it was reserved. Then the image is sent again and counted in ``unseen``: fal may have created a request for
it that no try ever saw.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.batch.manifest import atomic_writer, is_local
from airflow_provider_sam3.exceptions import FalUntrustedUrlError
from airflow_provider_sam3.hooks.trust import check_reference
from airflow_provider_sam3.models.reference import RequestReference

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.models.batch import BatchEntry

__all__ = [
    "HAND_OVER_GRACE_SECONDS",
    "LEDGER_FOLDER",
    "UnrecordedLedger",
    "resolve_reservations",
    "settle_reservations",
    "trusted_records",
]

LEDGER_FOLDER = "_unrecorded"
HAND_OVER_GRACE_SECONDS = 15.0
"""How long after a reserved submit's lease a stopped try may still be writing its hand-over file."""
_URL_NAMES = ("status_url", "response_url", "cancel_url")


class UnrecordedLedger:
    """The hand-over files of one batch task's folder."""

    def __init__(self, folder: Any) -> None:
        self.folder = folder / LEDGER_FOLDER

    def hand_over(self, entry: BatchEntry, reference: RequestReference, try_number: int) -> Any:
        """Write the file that lets the next try adopt ``reference`` for ``entry``; returns where it is."""
        if is_local(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{entry.index}-{reference.request_id}.json"
        record = {
            "index": entry.index,
            "source": entry.source,
            "reserved_at": entry.reserved_at,
            "try_number": try_number,
            "request_id": reference.request_id,
            **{name: getattr(reference, name) for name in _URL_NAMES},
        }
        with atomic_writer(target) as out:
            out.write(json.dumps(record))
        return target

    def read(self) -> list[dict[str, Any]]:
        """Every hand-over file's record that has the expected shape (others are skipped: read, never trusted)."""
        if not self.folder.exists():
            return []
        records = []
        for path in sorted(self.folder.iterdir(), key=str):
            try:
                with path.open("r") as handle:
                    record = json.loads(handle.read(64 * 1024))
            except (OSError, ValueError):
                continue
            if _well_formed(record):
                records.append(record)
        return records

    def clear(self) -> None:
        """Remove the hand-over files once the batch's manifest is written."""
        if not self.folder.exists():
            return
        for path in list(self.folder.iterdir()):
            path.unlink()
        try:
            self.folder.rmdir()
        except (OSError, AttributeError, NotImplementedError):
            pass


def _well_formed(record: Any) -> bool:
    return (
        isinstance(record, dict)
        and type(record.get("index")) is int
        and isinstance(record.get("source"), str)
        and isinstance(record.get("reserved_at"), float)
        and isinstance(record.get("request_id"), str)
        and all(isinstance(record.get(name), str) for name in _URL_NAMES)
    )


def resolve_reservations(
    state: BatchState, records: list[dict[str, Any]], lease: float, log: Any, now: float | None = None
) -> list[BatchEntry]:
    """Settle the ``sending`` entries an earlier try left: adopt the request it handed over, or, once its submit
    can no longer be in flight, put the image back in line as ``unseen``. Returns the entries that changed."""
    now = time.time() if now is None else now
    handed = {(r["index"], r["source"], r["reserved_at"]): r for r in records}
    changed = []
    for entry in state.in_state("sending"):
        record = handed.get((entry.index, entry.source, entry.reserved_at))
        if record is not None:
            entry.request_id, entry.submitted_at = record["request_id"], entry.reserved_at
            templates = state.url_templates or {}
            urls = {name: record[name] for name in _URL_NAMES}
            own = {name: t.replace("{request_id}", entry.request_id) for name, t in templates.items()}
            entry.urls = None if urls == own else urls
            entry.submissions += 1
            entry.state, entry.error, entry.error_class, entry.retryable = "submitted", None, None, False
            log.warning(
                "images[%d] (%s): adopting request %s, which try %s created at fal but could not record; waiting for "
                "it instead of paying again",
                entry.index,
                entry.source,
                entry.request_id,
                record.get("try_number"),
            )
        elif now >= (entry.reserved_at or 0.0) + lease + HAND_OVER_GRACE_SECONDS:
            entry.unseen += 1
            entry.fail(
                "its submit was in flight when an earlier try stopped and no try saw fal's answer: fal may have "
                "created a request for it that nobody can see (and may bill it)",
                "FalSubmitOutcomeUnknownError",
                retryable=True,
                state="pending",
            )
            log.warning(
                "images[%d] (%s): an earlier try was sending it when it stopped, and left no record of fal's answer; "
                "sending it again (fal may bill it twice if it had created that request)",
                entry.index,
                entry.source,
            )
        else:
            continue
        changed.append(entry)
    return changed


def trusted_records(records: list[dict[str, Any]], endpoint_id: str, queue_host: str, log: Any) -> list[dict[str, Any]]:
    """The hand-over records whose request id and URLs are the queue host's (a file comes from disk: one that names
    another host is ignored and logged, so the key is never sent there)."""
    trusted = []
    for record in records:
        reference = RequestReference(
            endpoint_id=endpoint_id, request_id=record["request_id"], **{name: record[name] for name in _URL_NAMES}
        )
        try:
            check_reference(reference, queue_host, where=f"the hand-over file of images[{record['index']}]")
        except FalUntrustedUrlError as error:
            log.warning("Ignoring a hand-over file: %s", error)
            continue
        trusted.append(record)
    return trusted


async def settle_reservations(
    state: BatchState, ledger: UnrecordedLedger, queue_host: str, lease: float, log: Any
) -> list[BatchEntry]:
    """Read the ledger (in a thread: it may be object storage) and settle the ``sending`` entries it answers or
    whose lease has passed (``resolve_reservations``); returns the entries whose request was adopted."""
    records = trusted_records(await asyncio.to_thread(ledger.read), state.endpoint_id, queue_host, log)
    changed = resolve_reservations(state, records, lease, log)
    for entry in changed:
        state.touch(str(entry.index))
    return [entry for entry in changed if entry.state == "submitted"]
