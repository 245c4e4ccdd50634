"""The batch at scale under a real `airflow standalone`: one listing split into shards by ``.expand()`` and merged
into one manifest (one shard cleared while it submits: fal bills each image once), and a deferred 5,000-image
batch whose queued requests are all cancelled when the task is marked failed."""

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
    """The example as shipped, with its own dag id, and retries a few seconds apart: Airflow 3.3.2 may fail a
    cleared shard's next try too (a 404 "Task instance not found" on its writes, seen on a quiet machine), and
    the default 5 min ``retry_delay`` would outlast the wait; every try still pays nothing twice."""
    source = (Path(__file__).resolve().parents[2] / "dags_examples" / "sam3_sharded_batch.py").read_text()
    assert "@dag(\n    schedule=None," in source and "        retries=2,\n" in source
    source = source.replace("@dag(\n    schedule=None,", '@dag(\n    dag_id="{dag_id}",\n    schedule=None,')
    return source.replace(
        "        retries=2,\n", "        retries=4,\n        retry_delay=pendulum.duration(seconds=5),\n"
    )


def running_shard(dep, dag_id: str, run_id: str) -> tuple[int] | None:
    """``(map_index,)`` of a shard task instance running on a worker, if any."""
    row = dep.query_one(
        "SELECT map_index FROM task_instance WHERE dag_id=? AND run_id=? AND task_id='segment' AND state='running'",
        (dag_id, run_id),
    )
    return (row[0],) if row else None


def test_one_listing_in_four_shards_merged_into_one_manifest(airflow_deployment, dag_writer, fal_emulator, tmp_path):
    """One shard is cleared while it submits: Airflow gives it a new try at once and refuses the running try's
    writes, as its scheduler does to a try it fails under load. Each of the 2,000 images is still billed once."""
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 2000, seed=41)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=16, service_time_s=0.02)
    fal_emulator.add_fault("slow_response", target="submit", every=1, delay_s=0.05)  # submitting takes a while
    dag_id = dag_writer(sharded_example_source())
    run_id = dep.trigger(dag_id, conf={"input_folder": str(paths[0].parent), "output_path": str(out), "prompt": "box"})
    wait_until(lambda: fal_emulator.counters()["submissions"]["total"] >= 50, 240, 0.05, what="50 submissions")
    (cleared,) = wait_until(lambda: running_shard(dep, dag_id, run_id), 240, 0.05, what="a shard running on a worker")
    dep.clear_task(dag_id, run_id, "segment", via="api", map_index=cleared)
    assert dep.wait_for_run(dag_id, run_id, timeout=540) == "success", dep.task_instances(dag_id, run_id)
    assert dep.try_number(dag_id, run_id, "segment", map_index=cleared) >= 2

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
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 2000 == counters["billed"]  # submissions == images == billed
    billed = {r["request_id"] for r in fal_emulator.requests() if r["billed"]}
    assert billed == {row["request_id"] for row in rows}  # each paid request is an image's result


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


def test_marking_a_deferred_5000_image_batch_failed_cancels_every_queued_request(
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

    # The trigger tops the batch up to max_in_flight (256) and nothing finishes: wait for that steady state (an
    # earlier snapshot missed the last requests still being submitted), then no submit can follow until the mark.
    def all_in_flight() -> set[str] | None:
        ids = {r["request_id"] for r in fal_emulator.requests()}
        return ids if len(ids) >= 256 else None

    waiting = wait_until(all_in_flight, 120, 0.2, what="256 requests waiting at fal (max_in_flight)")
    assert len(waiting) == 256  # max_in_flight: the trigger holds a bounded number of ids

    path = "/api/v2/dags/{}/dagRuns/{}/taskInstances/segment".format(
        urllib.parse.quote(dag_id, safe=""), urllib.parse.quote(run_id, safe="")
    )
    running = {r["request_id"] for r in fal_emulator.requests() if r["state"] == "IN_PROGRESS"}
    assert len(running) == 2  # the account's concurrency; the rest are queued
    dep.api("PATCH", path, {"new_state": "failed"})

    # What fal sees is the promise: every queued request cancelled before it started. Wait for that event, however
    # busy the machine (the triggerer cancels the trigger again at each sync; on_kill outlasts those cancels).
    queued = waiting - running

    def all_queued_cancelled() -> list[dict] | None:
        records = fal_emulator.requests()
        return records if {r["request_id"] for r in records if r["cancelled"]} >= queued else None

    records = wait_until(all_queued_cancelled, 120, 0.2, what="a cancel at fal for every queued request")
    assert {r["request_id"] for r in records if r["cancelled"]} == queued  # the two running were left alone
    assert not any(r["billed"] for r in records if r["request_id"] in queued)  # cancelled before they started
    said = f"cancelling the requests of this batch still queued at fal, newest first ({len(waiting)} waiting there)"
    wait_until(lambda: said in dep.task_log(dag_id, run_id, "segment"), 60, 0.2, what="the trigger's on_kill line")
    assert fal_emulator.counters()["submissions"]["total"] == len(waiting)  # nothing submitted after the mark
