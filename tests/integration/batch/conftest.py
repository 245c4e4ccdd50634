"""Batch tests: folders of small generated photos, and a dag.test() runner that also returns task logs."""

from __future__ import annotations

import pytest
from photos import write_photos


@pytest.fixture
def photos(tmp_path):
    def make(count: int, *, seed: int = 7, name: str = "in"):
        return write_photos(tmp_path / name, count, seed=seed)

    return make


@pytest.fixture
def run_batch_dag(airflow_db, fal_emulator):
    """Run a DAG with dag.test(); return (dag run state, {task_id: (state, xcom)})."""

    def run(dag, **conf):
        dag_run = dag.test(run_conf=conf or None)
        results = {
            ti.task_id: (ti.state, ti.xcom_pull(task_ids=ti.task_id) if ti.state == "success" else None)
            for ti in dag_run.get_task_instances()
        }
        return dag_run.state, results

    return run
