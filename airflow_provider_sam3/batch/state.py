"""A batch's entries in the task state store, so no retry, crash, restart or clear submits an image twice.

The store keeps small JSON values, one database row per key, and survives retries and clears of the same run. The
batch keeps:

- a header (``fal_batch``): endpoint, fal's URL templates, deadline, how many shards;
- shards (``fal_batch.<n>``) of ``SHARD_SIZE`` entries in input order: the image list of the run's first try
  (retries and clears use it, they never list the folder again) and every image's state;
- a journal of ``JOURNAL_SLOTS`` small rows (``fal_batch.j.<slot>``): before an image is sent its reservation is written
  there, and as soon as its submit call returns its outcome is, in the same row as the reservation of the image that
  submit slot sends next (about 400 bytes per entry; slots whose calls returned together share a row). Every
  ``JOURNAL_SLOTS`` rows the changed shards are written and the slots start over. A reader applies a journal row's entry
  when its ``version`` is newer than the shard's. So nothing is sent without a durable reservation, a request id is
  durable one small write after fal answers, and 100,000 images cost at most about 100,000 journal writes (fewer when
  the store is slow and slots share rows) plus one shard rewrite per 32 of them.

A finished batch leaves only its header, holding the summary and the run's clear count (``epoch``): a later try of
the same run (Airflow failed the try after the batch finished) returns that summary instead of paying again; a try
after a clear of the run starts afresh.

Entries are keyed by their input position (``str(index)``). The engine and the operator hand in the store wrapped in
``storage.state_store.GuardedStore``: a write the store refuses becomes ``StateStoreRefusedError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sam3.models.batch import BATCH_SCHEMA_VERSION, BatchEntry

__all__ = ["JOURNAL_SLOTS", "SHARD_SIZE", "STATE_KEY", "BatchState", "journal_key", "shard_key"]

STATE_KEY = "fal_batch"
SHARD_SIZE = 100
JOURNAL_SLOTS = 32


def shard_key(number: int) -> str:
    return f"{STATE_KEY}.{number}"


def journal_key(slot: int) -> str:
    return f"{STATE_KEY}.j.{slot}"


@dataclass
class BatchState:
    """Every input row of one batch task, by position, plus what all of them share."""

    endpoint_id: str
    started_at: float
    deadline: float
    entries: dict[str, BatchEntry] = field(default_factory=dict)
    url_templates: dict[str, str] | None = None
    cycle: int = 0
    dirty: set[int] = field(default_factory=set)
    saved_header: dict[str, Any] | None = None
    journal_next: int = 0
    estimate_usd: float | None = None
    summary: dict[str, Any] | None = None
    epoch: int | None = None

    # ------------------------------------------------------------------ building

    def add(self, entry: BatchEntry) -> None:
        """Add an input row at the end (its index is its position), in the last shard if it has room."""
        key = str(entry.index)
        assert entry.index == len(self.entries), "entries are added in input order, keyed by position"
        shard = entry.index // SHARD_SIZE
        self.entries[key] = entry
        self.dirty.add(shard)

    def touch(self, key: str) -> None:
        """Mark an entry changed, so the next ``save`` writes its shard."""
        self.dirty.add(int(key) // SHARD_SIZE)

    @property
    def shard_count(self) -> int:
        return -(-len(self.entries) // SHARD_SIZE)

    def ordered(self) -> list[BatchEntry]:
        """Every entry in input order (entries are added in that order)."""
        return list(self.entries.values())

    def in_state(self, *states: str) -> list[BatchEntry]:
        return [entry for entry in self.entries.values() if entry.state in states]

    def grouped(self) -> dict[str, list[BatchEntry]]:
        """Entries by state, each list in input order (one pass over the batch)."""
        groups: dict[str, list[BatchEntry]] = {
            name: [] for name in ("pending", "sending", "submitted", "completed", "done", "failed", "invalid", "repeat")
        }
        for entry in self.entries.values():
            groups[entry.state].append(entry)
        return groups

    def by_request_id(self) -> dict[str, str]:
        return {
            entry.request_id: key for key, entry in self.entries.items() if entry.request_id and entry.state != "repeat"
        }

    def outcome_of(self, entry: BatchEntry) -> BatchEntry:
        """The entry whose request answers this row: itself, or the row it repeats."""
        return self.entries[str(entry.repeat_of)] if entry.state == "repeat" else entry

    def counts(self) -> dict[str, int]:
        """Rows by state; a repeat counts as the state of the row it repeats."""
        counts = {"pending": 0, "sending": 0, "submitted": 0, "completed": 0, "done": 0, "failed": 0, "invalid": 0}
        for entry in self.entries.values():
            counts[self.outcome_of(entry).state] += 1
        return counts

    def progress(self) -> dict[str, int]:
        """``{"total", "done", "failed"}`` for the progress line (invalid rows count as failed)."""
        counts = self.counts()
        return {"total": len(self.entries), "done": counts["done"], "failed": counts["failed"] + counts["invalid"]}

    # ------------------------------------------------------------------ the task state store

    def journal(self, store: Any, *keys: str) -> None:
        """Make these entries durable now, in one journal row (a submit's outcome and the next reservation);
        every ``JOURNAL_SLOTS`` rows, write the shards. Raises ``StateStoreRefusedError`` when the store refuses."""
        for key in keys:
            self.entries[key].version += 1
            self.touch(key)
        if store is None:
            return
        row: dict[str, Any] = {"e": [{"k": key, **self.entries[key].to_json()} for key in keys]}
        if self.url_templates and (self.saved_header or {}).get("url_templates") != self.url_templates:
            row["u"] = self.url_templates  # until the header holds fal's URL templates, the rows that need them do
        store.set(journal_key(self.journal_next % JOURNAL_SLOTS), row)
        self.journal_next += 1
        if self.journal_next % JOURNAL_SLOTS == 0:
            self.save(store)

    def save(self, store: Any) -> None:
        """Write every changed shard, and the header when it changed."""
        if store is None:
            return
        shards: dict[int, dict[str, Any]] = {}
        for number in self.dirty:  # a shard holds positions number * SHARD_SIZE onwards
            keys = (str(i) for i in range(number * SHARD_SIZE, (number + 1) * SHARD_SIZE))
            shards[number] = {key: self.entries[key].to_json() for key in keys if key in self.entries}
        for number, value in sorted(shards.items()):
            if value:
                store.set(shard_key(number), value)
            else:
                store.delete(shard_key(number))
        header = self._header()
        if header != self.saved_header:
            store.set(STATE_KEY, header)
            self.saved_header = header
        self.dirty.clear()

    def _header(self) -> dict[str, Any]:
        return {
            "version": BATCH_SCHEMA_VERSION,
            "endpoint_id": self.endpoint_id,
            "started_at": self.started_at,
            "deadline": self.deadline,
            "url_templates": self.url_templates,
            "cycle": self.cycle,
            "shards": self.shard_count,
            "images": len(self.entries),
            "estimate_usd": self.estimate_usd,
            "summary": self.summary,
            "epoch": self.epoch,
        }

    @classmethod
    def load(cls, store: Any) -> BatchState | None:
        header = store.get(STATE_KEY) if store is not None else None
        if not header:
            return None
        state = cls(
            endpoint_id=header["endpoint_id"],
            started_at=header["started_at"],
            deadline=header["deadline"],
            url_templates=header.get("url_templates"),
            cycle=header.get("cycle", 0),
            saved_header=header,
            estimate_usd=header.get("estimate_usd"),
            summary=header.get("summary"),
            epoch=header.get("epoch"),
        )
        loaded: list[BatchEntry] = []
        for number in range(header.get("shards", 0)):
            loaded.extend(BatchEntry.from_json(data) for data in (store.get(shard_key(number)) or {}).values())
        for position, entry in enumerate(sorted(loaded, key=lambda e: e.index)):
            entry.index = position  # schema 1 keyed entries by content; positions are the same rows, renumbered
            state.add(entry)
        state.dirty.clear()
        if header.get("version", 1) < BATCH_SCHEMA_VERSION:
            state.dirty.update(range(state.shard_count))
        state._replay_journal(store)
        if state.dirty:  # before this process writes journal slots over rows that are only there
            state.save(store)
        return state

    def _replay_journal(self, store: Any) -> None:
        """Apply what was journalled after the last shard write: each row entry newer (``version``) than its shard's."""
        for slot in range(JOURNAL_SLOTS):
            row = store.get(journal_key(slot)) or {}
            if self.url_templates is None and isinstance(row.get("u"), dict):
                self.url_templates = row["u"]
            for item in row.get("e") or ([row] if "k" in row else []):  # schema 2 wrote one bare entry per row
                key = item.get("k")
                if key not in self.entries:
                    continue
                recorded, current = BatchEntry.from_json(item), self.entries[key]
                newer = recorded.version > current.version or (
                    recorded.version == current.version == 0 and recorded.submissions > current.submissions
                )
                if newer:
                    self.entries[key] = recorded
                    self.touch(key)

    def finish(self, store: Any, summary: dict[str, Any]) -> None:
        """The manifest is written: keep only the header, holding ``summary`` and the run's ``epoch``. A retry in the
        same epoch returns the summary (Airflow can fail a try after it finished); a clear starts afresh."""
        self.summary = summary
        self.save(store)  # first: a try stopped during the deletes below still finds the summary
        self.delete_entries(store)

    def forget(self, store: Any) -> None:
        """Remove the batch from the store: a try after a clear of a finished batch starts afresh."""
        self.delete_entries(store)
        if store is not None:
            store.delete(STATE_KEY)
        self.saved_header = None

    def delete_entries(self, store: Any) -> None:
        """Delete the rows of the entries (shards and journal slots); the header stays. Idempotent: a later try
        finishes the cleanup of a try Airflow failed halfway through it."""
        if store is None:
            return
        for number in range(int((self.saved_header or {}).get("shards") or self.shard_count)):
            store.delete(shard_key(number))
        for slot in range(JOURNAL_SLOTS):
            store.delete(journal_key(slot))
