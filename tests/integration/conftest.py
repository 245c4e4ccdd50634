"""Shared pieces for the integration suites (operators, evidence, trust): a sample photo on disk and a DAG runner
under dag.test()."""

from __future__ import annotations

import io

import pytest


def square_photo(width: int = 96, height: int = 64) -> bytes:
    """A dark photo with one bright square: the emulator's segmenter finds exactly that square."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), (20, 30, 40))
    ImageDraw.Draw(img).rectangle([30, 16, 61, 47], fill=(240, 220, 60))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(square_photo())
    return path


@pytest.fixture
def run_dag(airflow_db, fal_emulator):
    """Run a DAG with dag.test() against the emulator; return {task_id: (state, xcom return value)}."""

    def run(dag, **conf):
        from airflow.utils.state import DagRunState

        dag_run = dag.test(run_conf=conf or None)
        results = {}
        for ti in dag_run.get_task_instances():
            results[ti.task_id] = (ti.state, ti.xcom_pull(task_ids=ti.task_id) if ti.state == "success" else None)
        results["__run__"] = (dag_run.state, DagRunState.SUCCESS)
        results["__links__"] = {
            ti.task_id: ti.xcom_pull(task_ids=ti.task_id, key="fal_request_url")
            for ti in dag_run.get_task_instances()
            if ti.map_index < 0
        }
        return results

    return run
