"""Airflow's task state store as the provider uses it: refused writes named, large values split in parts.

The store survives retries and clears of a run, which is what lets a new try reattach instead of paying again; it
is also how a try learns that Airflow has moved on without it (the scheduler failed it, a clear replaced it): its
writes are refused. ``GuardedStore`` turns any refused write into ``StateStoreRefusedError``, so every caller can
stop before sending anything more. No Airflow imports: the store is handed in.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_sam3.exceptions import StateStoreRefusedError

__all__ = ["PART_CHARS", "GuardedStore", "delete_parts", "get_parts", "guarded", "put_parts", "run_epoch"]

PART_CHARS = 60_000
"""Characters of JSON per value: Airflow's REST API refuses values over ``[state_store] max_value_storage_bytes``
(65,535), and workers warn above it."""


class GuardedStore:
    """A task state store whose failed writes raise ``StateStoreRefusedError`` naming the key."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, key: str, default: Any = None) -> Any:
        return self.store.get(key, default)

    def set(self, key: str, value: Any) -> None:
        try:
            self.store.set(key, value)
        except Exception as error:  # noqa: BLE001 - any refusal means this try can no longer make anything durable
            raise StateStoreRefusedError(key, error) from error

    def delete(self, key: str) -> None:
        try:
            self.store.delete(key)
        except Exception as error:  # noqa: BLE001
            raise StateStoreRefusedError(key, error) from error


def guarded(store: Any) -> GuardedStore | None:
    """``store`` wrapped in ``GuardedStore`` (``None`` stays ``None``: a context without a task state store)."""
    if store is None or isinstance(store, GuardedStore):
        return store
    return GuardedStore(store)


def put_parts(store: Any, key: str, value: Any) -> int:
    """Store ``value`` as JSON under ``key.part.<n>`` in pieces of ``PART_CHARS``; returns how many."""
    text = json.dumps(value, separators=(",", ":"))
    parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
    for number, part in enumerate(parts):
        store.set(f"{key}.part.{number}", part)
    return len(parts)


def get_parts(store: Any, key: str, count: int) -> Any:
    """The value ``put_parts`` stored, or ``None`` when a part is missing or the whole is not JSON."""
    pieces = [store.get(f"{key}.part.{number}") for number in range(count)]
    if any(not isinstance(piece, str) for piece in pieces):
        return None
    try:
        return json.loads("".join(pieces))
    except ValueError:
        return None


def delete_parts(store: Any, key: str, count: int) -> None:
    for number in range(count):
        store.delete(f"{key}.part.{number}")


def run_epoch(context: Any) -> int | None:
    """The run's clear count (Airflow adds one each time tasks of the run are cleared): what a task stores along
    with a finished result, so a later try of the same run returns it and a try after a clear starts afresh."""
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    number = getattr(dag_run, "clear_number", None)
    return number if isinstance(number, int) and not isinstance(number, bool) else None
