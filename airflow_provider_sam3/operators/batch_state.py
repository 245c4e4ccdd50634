"""A batch's entries in the task state store, so no retry, crash or restart submits an image twice.

The store keeps small JSON values per key, so the entries are split into shards of ``SHARD_SIZE`` images in input
order (submissions go in that order, so one round of submissions rewrites one or two shards), under a header
that names the endpoint, fal's URL templates and the deadline. Shards are written right after each round of
submissions, before anything else happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sam3.models.batch import BATCH_SCHEMA_VERSION, BatchEntry

STATE_KEY = "fal_batch"
SHARD_SIZE = 100


def shard_key(number: int) -> str:
    return f"{STATE_KEY}.{number}"


@dataclass
class BatchState:
    """Every image of one batch task by key (``models.batch.item_key``), plus what all of them share."""

    endpoint_id: str
    started_at: float
    deadline: float
    entries: dict[str, BatchEntry] = field(default_factory=dict)
    url_templates: dict[str, str] | None = None
    cycle: int = 0
    shard_of: dict[str, int] = field(default_factory=dict)
    dirty: set[int] = field(default_factory=set)
    saved_header: dict[str, Any] | None = None

    # ------------------------------------------------------------------ building

    def add(self, key: str, entry: BatchEntry) -> None:
        """Add an image at the end, in the last shard if it has room."""
        shard = len(self.entries) // SHARD_SIZE
        self.entries[key] = entry
        self.shard_of[key] = shard
        self.dirty.add(shard)

    def touch(self, key: str) -> None:
        """Mark an entry changed, so the next ``save`` writes its shard."""
        self.dirty.add(self.shard_of[key])

    def remove(self, key: str) -> None:
        self.dirty.add(self.shard_of.pop(key))
        del self.entries[key]

    @property
    def shard_count(self) -> int:
        return max(self.shard_of.values(), default=-1) + 1

    def by_request_id(self) -> dict[str, str]:
        return {entry.request_id: key for key, entry in self.entries.items() if entry.request_id}

    def counts(self) -> dict[str, int]:
        counts = {"pending": 0, "submitted": 0, "done": 0, "failed": 0, "invalid": 0}
        for entry in self.entries.values():
            counts[entry.state] += 1
        return counts

    # ------------------------------------------------------------------ the task state store

    def save(self, store: Any) -> None:
        """Write every changed shard, and the header when it changed."""
        if store is None:
            return
        shards: dict[int, dict[str, Any]] = {number: {} for number in self.dirty}
        for key, number in self.shard_of.items():
            if number in shards:
                shards[number][key] = self.entries[key].to_json()
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
            "version": BATCH_SCHEMA_VERSION, "endpoint_id": self.endpoint_id, "started_at": self.started_at,
            "deadline": self.deadline, "url_templates": self.url_templates, "cycle": self.cycle,
            "shards": self.shard_count, "images": len(self.entries),
        }

    @classmethod
    def load(cls, store: Any) -> BatchState | None:
        header = store.get(STATE_KEY) if store is not None else None
        if not header:
            return None
        state = cls(
            endpoint_id=header["endpoint_id"], started_at=header["started_at"], deadline=header["deadline"],
            url_templates=header.get("url_templates"), cycle=header.get("cycle", 0), saved_header=header,
        )
        for number in range(header.get("shards", 0)):
            for key, data in (store.get(shard_key(number)) or {}).items():
                state.entries[key] = BatchEntry.from_json(data)
                state.shard_of[key] = number
        return state

    def forget(self, store: Any) -> None:
        """Remove the batch from the store once its manifest is written, so a later clear starts afresh."""
        if store is None:
            return
        for number in range(self.shard_count):
            store.delete(shard_key(number))
        store.delete(STATE_KEY)
        self.saved_header = None
