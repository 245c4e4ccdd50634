"""The batch operator under dag.test() against the emulator: every image ends in the manifest, paid once."""

from __future__ import annotations

import json
import os

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PARAMS = {"images": "", "out": "", "prompt": "box"}


@dag(dag_id="sam3_batch_deferred", schedule=None, params=PARAMS)
def batch_deferred():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "{{ params.prompt }}"},
        deferrable=True,
        on_image_failure="report",
    )


@dag(dag_id="sam3_batch_on_worker", schedule=None, params=PARAMS)
def batch_on_worker():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "{{ params.prompt }}"},
        deferrable=False,
        max_in_flight=5,
        on_image_failure="report",
    )


deferred_dag = batch_deferred()
on_worker_dag = batch_on_worker()


def local(url: str) -> str:
    return url[len("file://") :] if url.startswith("file://") else url


def read_manifest(summary):
    with open(local(summary["manifest"])) as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.parametrize("which", ["deferred", "on_worker"])
def test_folder_batch_every_image_once(which, photos, tmp_path, run_batch_dag, fal_emulator):
    paths = photos(12)
    out = tmp_path / "out"
    dag_object = deferred_dag if which == "deferred" else on_worker_dag
    state, results = run_batch_dag(dag_object, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    summary = results["segment"][1]
    assert summary["images"] == 12 and summary["succeeded"] == 12 and summary["failed"] == 0
    rows = read_manifest(summary)
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    assert all(row["status"] == "succeeded" and row["mask_count"] >= 1 for row in rows)
    for row in rows:
        for mask in row["masks"]:
            assert os.path.exists(local(mask["location"])), mask
            assert mask["pixel_box"] and mask["score"] is not None
    assert fal_emulator.counters()["submissions"]["total"] == 12
    assert summary["submissions"] == 12
    if which == "on_worker":
        assert fal_emulator.counters()["max_in_progress"] <= 5
