"""The batch at scale under a real `airflow standalone`: one listing split into shards by ``.expand()`` and merged
into one manifest, and a deferred 5,000-image batch whose waiting requests are all cancelled when the task is
marked failed."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest
from photos import write_photos
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    """The deployment finds the emulator through FAL_KEY and FAL_QUEUE_RUN_HOST."""
    return dict(fal_emulator_server.env)


def sharded_example_source() -> str:
    source = (Path(__file__).resolve().parents[2] / "dags_examples" / "sam3_sharded_batch.py").read_text()
    assert "@dag(\n    schedule=None," in source
    return source.replace("@dag(\n    schedule=None,", '@dag(\n    dag_id="{dag_id}",\n    schedule=None,')


def test_one_listing_in_four_shards_merged_into_one_manifest(airflow_deployment, dag_writer, fal_emulator, tmp_path):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 2000, seed=41)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=16, service_time_s=0.02)
    dag_id = dag_writer(sharded_example_source())
    run_id = dep.trigger(dag_id, conf={"input_folder": str(paths[0].parent), "output_path": str(out), "prompt": "box"})
    assert dep.wait_for_run(dag_id, run_id, timeout=540) == "success", dep.task_instances(dag_id, run_id)

    shard_sizes = []
    for map_index in range(4):
        summary = dep.xcom(dag_id, run_id, "segment", map_index=map_index)
        assert summary["succeeded"] == summary["images"] > 0, summary
        assert Path(summary["manifest"].removeprefix("file://")).parent.name == str(map_index)
        shard_sizes.append(summary["images"])
    assert sum(shard_sizes) == 2000
    merged = dep.xcom(dag_id, run_id, "merge")
    assert (merged["shards"], merged["images"], merged["succeeded"], merged["submissions"]) == (4, 2000, 2000, 2000)
    rows = [json.loads(line) for line in Path(merged["manifest"].removeprefix("file://")).read_text().splitlines()]
    assert sorted(row["source"] for row in rows) == sorted(str(p) for p in paths)  # each image once
    assert [row["index"] for row in rows] == list(range(2000))
    assert [row["shard"] for row in rows] == sorted(row["shard"] for row in rows)  # shard after shard
    assert fal_emulator.counters()["submissions"]["total"] == 2000  # submissions == images


BIG_DAG = """
import pendulum
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ dag_run.conf['images'] }}",
        output_path="{{ dag_run.conf['out'] }}",
        arguments={"prompt": "box"},
        deferrable=True,
        submit_concurrency=16,
    )


the_dag()
"""


def test_marking_a_deferred_5000_image_batch_failed_cancels_every_waiting_request(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 5000, seed=43)
    fal_emulator.configure(concurrency=2, service_time_s=120.0)  # nothing finishes: everything waits at fal
    dag_id = dag_writer(BIG_DAG)
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(tmp_path / "out")})
    dep.watch_task(dag_id, run_id, "segment").wait_for("deferred", timeout=240)
    wait_until(
        lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2,
        60,
        0.2,
        what="the batch trigger running in the triggerer",
    )
    waiting = {r["request_id"] for r in fal_emulator.requests()}
    assert 0 < len(waiting) <= 256  # max_in_flight: the trigger holds a bounded number of ids

    path = "/api/v2/dags/{}/dagRuns/{}/taskInstances/segment".format(
        urllib.parse.quote(dag_id, safe=""), urllib.parse.quote(run_id, safe="")
    )
    dep.api("PATCH", path, {"new_state": "failed"})
    wait_until(
        lambda: fal_emulator.counters()["cancels"]["total"] >= len(waiting),
        40,
        0.2,
        what="the trigger's on_kill cancelling every waiting request",
    )
    records = fal_emulator.requests()
    assert {r["request_id"] for r in records if r["cancelled"]} == waiting
    assert fal_emulator.counters()["submissions"]["total"] == len(waiting)  # nothing submitted after the mark

    # The trigger logs its summary after the last cancel's reply; the emulator counted that cancel before replying.
    def log_with_summary() -> str | None:
        log = dep.task_log(dag_id, run_id, "segment")
        return log if " cancels to fal for the " in log else None

    log = wait_until(
        log_with_summary,
        60,
        0.2,
        what="the trigger's on_kill summary in the task log",
    )
    assert f"sent {len(waiting)} cancels to fal for the {len(waiting)} requests" in log
    assert "were not cancelled within" not in log
