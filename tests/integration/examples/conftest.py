"""Fixtures for the example-DAG tests: sample photos on disk and a runner that returns every task's XCom."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_runs import load_example


@pytest.fixture
def sample_images(tmp_path):
    """``make(count)`` -> sorted paths of ``count`` synthetic product photos (one coloured shape each)."""

    def make(count: int, folder: Path | None = None) -> list[Path]:
        demo = load_example("_demo")
        return demo.make_sample_images(folder or tmp_path / "inputs", count)

    return make


@pytest.fixture
def run_example(airflow_db, fal_emulator):
    """Run a DAG with ``dag.test()`` against the emulator.

    Returns ``(dag_run, results)`` with ``results[(task_id, map_index)] = (state, xcom return value)``; a mapped task's
    instances have map indexes 0..n-1, an unmapped task has -1.
    """

    def run(dag, **conf):
        dag_run = dag.test(run_conf=conf or None)
        results = {}
        for ti in dag_run.get_task_instances():
            value = None
            if ti.state == "success":
                value = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
            results[(ti.task_id, ti.map_index)] = (ti.state, value)
        return dag_run, results

    return run
