"""Helpers for the example-DAG tests (fixtures are in conftest.py): import an example, read a run's XComs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "dags_examples"


def load_example(name: str):
    """Import ``dags_examples/<name>.py`` as the module ``<name>`` (how ``dag.test()`` and the dag-processor see it)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXAMPLES))


def mapped(results: dict, task_id: str) -> list:
    """The XCom values of a mapped task's instances, in map-index order (fails unless every instance succeeded)."""
    entries = sorted((index, state_value) for (task, index), state_value in results.items() if task == task_id)
    assert entries, f"no instance of {task_id!r} ran"
    assert all(state == "success" for _, (state, _) in entries), entries
    return [value for _, (_, value) in entries]


def single(results: dict, task_id: str):
    """The XCom value of an unmapped task (fails unless it succeeded)."""
    state, value = results[(task_id, -1)]
    assert state == "success", (task_id, state)
    return value
