"""What the tab shows, read on the API server: one task instance, its returned document and its task state store.

Everything read here is what a task wrote (XCom, the state store), so it is parsed as untrusted: the result document
through its model, a batch summary by its ``kind``, a running batch through ``BatchState`` on a store that never
writes (the page only looks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["TaskRecord", "TaskKey", "ReadOnlyStore", "parse_map_index", "read_task"]

MAX_NAMED_INPUTS = 10_000
"""The most input locations taken from a task's rendered fields (a rendered list of images longer than Airflow's
``max_templated_field_length`` is stored truncated anyway)."""
MAX_XCOM_CHARS = 16 * 1024 * 1024
"""The largest returned value parsed (a document with 32 inline RLE masks of a large photo is a few MB)."""


@dataclass(frozen=True)
class TaskKey:
    """The task instance a page is about, from its URL."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int


@dataclass
class TaskRecord:
    """What the API server knows of one task instance: its state, operator, returned value and state-store rows."""

    key: TaskKey
    exists: bool
    state: str | None = None
    operator: str | None = None
    try_number: int = 0
    returned: Any = None
    store: dict[str, Any] | None = None
    rendered: dict[str, Any] | None = None

    def named_inputs(self) -> tuple[str, ...]:
        """Every local or object-storage location the task's rendered template fields name (its images, folders,
        output path): the only places the tab reads an input photo from. Read from Airflow's database, not from
        files a task left on storage."""
        found: list[str] = []
        _locations(self.rendered, found, depth=0)
        return tuple(found)


def parse_map_index(text: str) -> int:
    """The ``map_index`` path segment: a number, or -1 for an unmapped task (the UI leaves ``{MAP_INDEX}`` as is)."""
    text = text.strip()
    if text.lstrip("-").isdigit() and len(text) <= 9:
        return max(int(text), -1)
    return -1


class ReadOnlyStore:
    """A task state store snapshot with the ``KeyValueStore`` shape; writes are dropped: the page never changes
    what a running task relies on."""

    def __init__(self, rows: dict[str, Any]) -> None:
        self._rows = rows

    def get(self, key: str, default: Any = None) -> Any:
        return self._rows.get(key, default)

    def set(self, key: str, value: Any) -> None:
        return None

    def delete(self, key: str) -> None:
        return None


def read_task(session: Any, key: TaskKey) -> TaskRecord:
    """The task instance, its ``return_value`` XCom and its state-store rows (empty when it has none)."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    ti = session.scalars(
        select(TaskInstance).where(
            TaskInstance.dag_id == key.dag_id,
            TaskInstance.run_id == key.run_id,
            TaskInstance.task_id == key.task_id,
            TaskInstance.map_index == key.map_index,
        )
    ).first()
    if ti is None:
        return TaskRecord(key, exists=False)
    return TaskRecord(
        key,
        exists=True,
        state=str(ti.state.value if hasattr(ti.state, "value") else ti.state) if ti.state else None,
        operator=ti.operator,
        try_number=ti.try_number or 0,
        returned=_returned(session, key),
        store=_store_rows(session, key),
        rendered=_rendered_fields(session, key),
    )


def _rendered_fields(session: Any, key: TaskKey) -> dict[str, Any] | None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
    from sqlalchemy import select

    value = session.scalar(
        select(Rendered.rendered_fields).where(
            Rendered.dag_id == key.dag_id,
            Rendered.run_id == key.run_id,
            Rendered.task_id == key.task_id,
            Rendered.map_index == key.map_index,
        )
    )
    value = _json(value)
    return value if isinstance(value, dict) else None


def _locations(value: Any, found: list[str], depth: int) -> None:
    """Collect path-like strings (absolute paths, ``file://`` and object-store URLs; never http(s))."""
    if depth > 4 or len(found) >= MAX_NAMED_INPUTS:
        return
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("/") or ("://" in text[:16] and not text.lower().startswith(("http://", "https://"))):
            found.append(text)
    elif isinstance(value, dict):
        for item in value.values():
            _locations(item, found, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _locations(item, found, depth + 1)


def _returned(session: Any, key: TaskKey) -> Any:
    from airflow.models.xcom import XComModel

    row = session.scalars(
        XComModel.get_many(
            run_id=key.run_id,
            key="return_value",
            task_ids=key.task_id,
            dag_ids=key.dag_id,
            map_indexes=key.map_index,
            limit=1,
        )
    ).first()
    return None if row is None else _json(row.value)


def _store_rows(session: Any, key: TaskKey) -> dict[str, Any]:
    from airflow.models.task_state_store import TaskStateStoreModel as Row
    from sqlalchemy import select

    rows = session.execute(
        select(Row.key, Row.value).where(
            Row.dag_id == key.dag_id,
            Row.run_id == key.run_id,
            Row.task_id == key.task_id,
            Row.map_index == key.map_index,
        )
    )
    return {name: _json(value) for name, value in rows}


def _json(value: Any) -> Any:
    """A stored JSON value (text, or already decoded by the column type); None when it is not JSON."""
    for _ in range(2):  # XCom values may be JSON text inside a JSON column
        if not isinstance(value, (str, bytes)):
            return value
        if len(value) > MAX_XCOM_CHARS:
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value
