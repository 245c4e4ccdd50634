"""The batch operator under a real `airflow standalone` against the emulator: faults, a triggerer restart while the
batch waits, a worker killed in the middle of submitting, and Airflow taking a running try away (a clear, a mark
failed, a failure after it finished). Every image ends in the manifest, and fal bills each image exactly once."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest
from batch_dags import assert_every_image_once, dag_source
from deployment_session import emulator_env
from photos import write_photos
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    # A restarted triggerer adopts the dead one's triggers once its heartbeat is this many seconds old. The fal
    # connection's per-call timeout of 10 s makes a submit's reservation lease the shortest (30 s): a try after a
    # kill waits that long (plus a grace) before it sends again what the killed try was sending.
    return {
        **emulator_env(fal_emulator_server, request_timeout=10),
        "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
    }


def test_300_images_with_faults_and_a_triggerer_restart(airflow_deployment, dag_writer, fal_emulator, tmp_path):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 300, seed=3)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=4, service_time_s=0.5)
    fal_emulator.add_fault("rate_limit_429", target="submit", every=13)
    fal_emulator.add_fault("nginx_503", target="status", every=11)
    fal_emulator.add_fault("nginx_502", target="result", every=17)
    fal_emulator.add_fault("vanish", target="status", every=97)
    # The vanish fault takes whichever request the 97th status call is about: one image can draw it three times
    # (a CI run saw it), beyond the default two resubmissions. The retries here outlast that luck; what this test
    # checks is that every image ends once in the manifest, paid once, across faults and a triggerer restart.
    dag_id = dag_writer(dag_source(kill_after=0, max_resubmits=8))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    sampler = dep.watch_task(dag_id, run_id, "segment")
    sampler.wait_for("deferred", timeout=120)
    wait_until(
        lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2,
        60,
        0.2,
        what="the batch trigger running in the triggerer",
    )

    counters = fal_emulator.counters()
    waiting_at_kill = counters["submissions"]["total"] - counters["completed"]
    dep.kill_component("triggerer", signal.SIGKILL)
    dep.restart_triggerer()  # before any assertion: a failure here must not leave the module without a triggerer
    assert waiting_at_kill >= 100, counters  # the new triggerer has many of the max_in_flight (256) requests to finish
    assert dep.wait_for_run(dag_id, run_id, timeout=300) == "success", dep.task_instances(dag_id, run_id)

    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["failed"]) == (300, 300, 0)
    assert summary["resubmissions"] >= 1  # the vanished requests, submitted again and counted
    assert_every_image_once(out, paths, summary, fal_emulator)
    faults = fal_emulator.counters()["faults"]["by_kind"]
    assert all(faults.get(kind, 0) >= 1 for kind in ("rate_limit_429", "nginx_503", "nginx_502", "vanish")), faults
    trigger_logs = [p for p in dep.task_log_paths(dag_id, run_id, "segment") if ".trigger." in p.name]
    assert len(trigger_logs) >= 2, trigger_logs  # the batch trigger ran in the killed triggerer and in the new one
    assert fal_emulator.api_key not in dep.task_log(dag_id, run_id, "segment")


def test_worker_killed_while_submitting_pays_each_image_once(airflow_deployment, dag_writer, fal_emulator, tmp_path):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 120, seed=5)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=8, service_time_s=0.2)
    dag_id = dag_writer(dag_source(kill_after=40, submit_concurrency=1))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    assert dep.wait_for_run(dag_id, run_id, timeout=240) == "success", dep.task_instances(dag_id, run_id)

    assert dep.try_number(dag_id, run_id, "segment") >= 2  # try 1 died with SIGKILL mid-submission
    summary = dep.xcom(dag_id, run_id, "segment")
    # The row that saved submission 40 also reserved image 40, which the dead try never sent: the retry waits out
    # that reservation's lease, then sends it (unseen: it cannot know fal never got it).
    assert (summary["images"], summary["succeeded"], summary["unseen"], summary["resubmissions"]) == (120, 120, 1, 1)
    assert_every_image_once(out, paths, summary, fal_emulator)
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "with the image list of its first try (120 rows" in log2 and "not submitted again" in log2
    assert "1 being sent when a try stopped" in log2 and "left no record of fal's answer" in log2


def test_clearing_a_deferred_batch_cancels_its_requests_and_reruns(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 40, seed=9)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=2, service_time_s=30.0)  # nothing finishes before the clear
    dag_id = dag_writer(dag_source(kill_after=0))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    dep.watch_task(dag_id, run_id, "segment").wait_for("deferred", timeout=120)
    wait_until(
        lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2,
        60,
        0.2,
        what="the batch trigger running in the triggerer",
    )
    first = {r["request_id"]: r for r in fal_emulator.requests()}
    assert len(first) == 40
    running = {rid for rid, r in first.items() if r["state"] == "IN_PROGRESS"}
    assert len(running) == 2  # the account's concurrency: the other 38 are queued

    dep.clear_task(dag_id, run_id, "segment", via="api")
    # The trigger's on_kill cancels what is queued and leaves the two running requests to finish (fal bills a
    # request once it started, cancelled or not); its summary line comes after the last cancel's reply.
    log1 = wait_until(
        lambda: (lambda log: log if "sent 38 cancels to fal for the 38 requests" in log else None)(
            dep.task_log(dag_id, run_id, "segment", try_number=1)
        ),
        60,
        0.2,
        what="the trigger's on_kill summary line",
    )
    assert "2 already started were left alone" in log1
    cancelled = {r["request_id"] for r in fal_emulator.requests() if r.get("cancelled")}
    assert cancelled == set(first) - running

    # The cleared task runs again: it reattaches to the two running requests and sends the 38 cancelled ones again.
    fal_emulator.configure(concurrency=8, service_time_s=0.1)
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (40, 40, 38)
    rows = assert_every_image_once(out, paths, summary, fal_emulator)
    assert {row["request_id"] for row in rows} & set(first) == running  # the kept requests' results are used


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_worker_killed_while_one_submit_is_slow_pays_each_image_once(
    deferrable, airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    """The first submit answers slowly; the other slot goes on, and the worker dies once 30 requests are saved,
    while that call is still open. Each answered submit was saved as it returned, so the rerun sends only the
    images whose reservations no answer closed (fal created nothing for the slow one: the connection died before
    the emulator read the body)."""
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 60, seed=21)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=8, service_time_s=0.2)
    fal_emulator.add_fault("slow_response", target="submit", first=1, delay_s=6.0)
    dag_id = dag_writer(
        dag_source(kill_after=30, deferrable=deferrable, submit_concurrency=2), suffix="d" if deferrable else "w"
    )
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    assert dep.wait_for_run(dag_id, run_id, timeout=240) == "success", dep.task_instances(dag_id, run_id)

    assert dep.try_number(dag_id, run_id, "segment") >= 2  # try 1 died with SIGKILL mid-submission
    counters = fal_emulator.counters()
    assert counters["faults"]["by_kind"].get("slow_response") == 1, counters
    summary = dep.xcom(dag_id, run_id, "segment")
    # Two reservations were open at the kill: the slow call's, and the image the other slot reserved with its last
    # saved answer. The retry waits out their lease and sends both again (fal had created neither).
    assert (summary["images"], summary["succeeded"], summary["unseen"], summary["resubmissions"]) == (60, 60, 2, 2)
    assert_every_image_once(out, paths, summary, fal_emulator)
    assert counters["completed"] == 60 == counters["submissions"]["total"] == counters["billed"], counters
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "with the image list of its first try (60 rows" in log2 and "not submitted again" in log2


MAPPED_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


class FailedAfterFinishing(Sam3BatchOperator):
    # Map index 1's first try fails right after its batch finished, as Airflow 3.3.2's scheduler fails a resumed
    # try under load (apache/airflow#67287): its retry must return the summary, not pay again.

    def execute(self, context):
        return self._then_fail(context, super().execute(context))

    def execute_complete(self, context, event=None):
        return self._then_fail(context, super().execute_complete(context, event))

    def _then_fail(self, context, summary):
        ti = context["ti"]
        if summary is not None and ti.map_index == 1 and ti.try_number == 1:
            raise RuntimeError("this try was failed after the batch finished (as the scheduler's race does)")
        return summary


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    @task
    def lists(**context):
        return context["dag_run"].conf["lists"]

    FailedAfterFinishing.partial(
        task_id="segment",
        output_path="{{ dag_run.conf['out'] }}",
        arguments={"prompt": "box"},
        deferrable=True,
        poll_interval=0.5,
        retries=2,
        retry_delay=1,
    ).expand(images=lists())


the_dag()
"""


def test_mapped_batches_share_one_output_path(airflow_deployment, dag_writer, fal_emulator, tmp_path):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 36, seed=31)
    lists = [[str(p) for p in paths[i::3]] for i in range(3)]
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=6, service_time_s=0.2)
    dag_id = dag_writer(MAPPED_DAG)
    run_id = dep.trigger(dag_id, conf={"lists": lists, "out": str(out)})
    assert dep.wait_for_run(dag_id, run_id, timeout=240) == "success", dep.task_instances(dag_id, run_id)

    manifests = sorted(out.rglob("manifest.jsonl"))
    assert len(manifests) == 3, manifests
    for map_index, images in enumerate(lists):
        summary = dep.xcom(dag_id, run_id, "segment", map_index=map_index)
        manifest = Path(summary["manifest"].removeprefix("file://"))
        assert manifest in manifests and manifest.parent.name == str(map_index)
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert [row["source"] for row in rows] == images  # each task's own, complete manifest
        assert all(row["status"] == "succeeded" for row in rows), rows
        for row in rows:
            assert all(Path(m["location"].removeprefix("file://")).is_file() for m in row["masks"])
            assert Path(row["masks"][0]["location"].removeprefix("file://")).parent.parent == manifest.parent
    assert not list(out.rglob("_manifest")), "a finished task leaves no part files behind"
    assert dep.try_number(dag_id, run_id, "segment", map_index=1) >= 2  # try 1 was failed after it finished
    log = dep.task_log(dag_id, run_id, "segment", try_number=2, map_index=1)
    assert "finished in an earlier try of this run; returning its summary without paying again" in log
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 36 == counters["billed"], counters
    billed = {r["request_id"] for r in fal_emulator.requests() if r["billed"]}
    results = set()
    for map_index in range(3):
        summary = dep.xcom(dag_id, run_id, "segment", map_index=map_index)
        manifest = Path(summary["manifest"].removeprefix("file://"))
        results |= {json.loads(line)["request_id"] for line in manifest.read_text().splitlines()}
    assert results == billed  # each paid request is an image's result


def product_photos_source() -> str:
    source = (Path(__file__).resolve().parents[2] / "dags_examples" / "sam3_product_photos.py").read_text()
    assert 'schedule="@hourly",' in source
    return source.replace('schedule="@hourly",', 'dag_id="{dag_id}", schedule=None,')  # as shipped, own dag_id


def test_two_runs_of_the_product_photo_example_keep_both_manifests_and_pay_only_for_new_photos(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    import shutil

    dep = airflow_deployment
    inputs = tmp_path / "inputs"
    paths = write_photos(inputs, 5, seed=41)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=4, service_time_s=0.2)
    dag_id = dag_writer(product_photos_source())
    conf = {"input_folder": str(inputs), "output_path": str(out), "prompt": "product", "max_cost_usd": 1.0}
    first_run = dep.trigger(dag_id, conf=conf)
    assert dep.wait_for_run(dag_id, first_run, timeout=240) == "success", dep.task_instances(dag_id, first_run)
    extra = write_photos(tmp_path / "more", 2, seed=42)
    for number, path in enumerate(extra):
        shutil.copy(path, inputs / f"zz_new_{number}.png")
    second_run = dep.trigger(dag_id, conf=conf)
    assert dep.wait_for_run(dag_id, second_run, timeout=240) == "success", dep.task_instances(dag_id, second_run)

    first = dep.xcom(dag_id, first_run, "render")
    second = dep.xcom(dag_id, second_run, "render")
    assert first["manifest"] != second["manifest"]
    new = [str(inputs / f"zz_new_{n}.png") for n in range(2)]
    runs = ((first, [str(p) for p in paths], []), (second, [*map(str, paths), *new], paths))
    for summary, expected, answered in runs:
        manifest = Path(summary["manifest"].removeprefix("file://"))
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert [row["source"] for row in rows] == expected  # each run segments the whole folder
        assert all(row["status"] == "succeeded" for row in rows)
        assert [row["source"] for row in rows if row["cache"]["hit"]] == [str(p) for p in answered]
        assert Path(summary["metadata"].removeprefix("file://")).is_file()
    assert (first["cache_hits"], first["cost_usd"], second["cache_hits"]) == (0, 0.025, 5)
    assert second["cost_usd"] == 0.01  # only the two new photos were paid for
    assert len(list(out.rglob("manifest.jsonl"))) == 2
    assert fal_emulator.counters()["submissions"]["total"] == 7 == fal_emulator.counters()["billed"]


def test_a_try_cleared_while_it_submits_hands_its_unrecorded_requests_to_the_next_try(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    """A clear of a running task gives it a new try at once: the running try's writes are refused from then on
    (Airflow's scheduler does the same to a resumed try it fails under load). The running try sends nothing more;
    the requests fal created for its calls in flight are handed over through the task's folder, and the new try
    adopts them: each image is sent once and billed once, nothing is cancelled after it started."""
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 120, seed=23)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=8, service_time_s=0.2)
    fal_emulator.add_fault("slow_response", target="submit", every=1, delay_s=0.25)  # four calls always in flight
    dag_id = dag_writer(dag_source(kill_after=0, deferrable=False, submit_concurrency=4), suffix="clear")
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    wait_until(lambda: fal_emulator.counters()["submissions"]["total"] >= 40, 120, 0.05, what="40 submissions")
    dep.clear_task(dag_id, run_id, "segment", via="api")
    assert dep.wait_for_run(dag_id, run_id, timeout=300) == "success", dep.task_instances(dag_id, run_id)

    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["unseen"]) == (120, 120, 0), summary
    assert_every_image_once(out, paths, summary, fal_emulator)
    log1 = dep.task_log(dag_id, run_id, "segment", try_number=1)
    handed = re.findall(r"request ([0-9a-f-]{36}) could not be saved .* handed to the next try", log1)
    assert 1 <= len(handed) <= 4, log1[-3000:]  # the calls in flight when its writes were refused
    later = "".join(dep.task_log(dag_id, run_id, "segment", try_number=n) for n in (2, 3))
    assert all(f"adopting request {request_id}" in later for request_id in handed), later[-3000:]
    assert not any(r["cancelled"] and r["billed"] for r in fal_emulator.requests())


def test_marking_a_running_batch_failed_then_clearing_it_pays_each_image_once(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    """A user marks the task failed while it submits (the try keeps its task instance: its writes still count),
    then clears it. The killed try's on_kill stops it sending and cancels what is still queued; the cleared try
    reattaches to everything else. Each image is billed once."""
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 120, seed=29)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=8, service_time_s=0.2)
    fal_emulator.add_fault("slow_response", target="submit", every=1, delay_s=0.25)
    dag_id = dag_writer(dag_source(kill_after=0, deferrable=False, submit_concurrency=4), suffix="mark")
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    wait_until(lambda: fal_emulator.counters()["submissions"]["total"] >= 40, 120, 0.05, what="40 submissions")
    dep.set_task_state(dag_id, run_id, "segment", "failed")
    wait_until(lambda: dep.run_state(dag_id, run_id) == "failed", 120, 0.2, what="the run failing after the mark")
    # The killed try's on_kill cancels what is queued, then the try stops sending (instead of going on until its
    # SIGKILL 5 s later). Log lines reach the task log file asynchronously: wait for the last one.
    log1 = wait_until(
        lambda: (lambda log: log if "nothing more is sent" in log else None)(
            dep.task_log(dag_id, run_id, "segment", try_number=1)
        ),
        120,
        0.2,
        what="the killed try stopping after its on_kill",
    )
    assert "of this batch still queued there" in log1
    assert fal_emulator.counters()["submissions"]["total"] < 120

    dep.clear_task(dag_id, run_id, "segment", via="api")
    assert dep.wait_for_run(dag_id, run_id, timeout=300) == "success", dep.task_instances(dag_id, run_id)
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"]) == (120, 120), summary
    assert_every_image_once(out, paths, summary, fal_emulator)


EXAMPLES = Path(__file__).resolve().parents[2] / "dags_examples"


def test_the_product_photo_batch_triggers_the_table_dag_through_its_asset(airflow_deployment, fal_emulator, tmp_path):
    """The example pair under the real scheduler: the batch's outlet event carries its manifest, counts and cost;
    the downstream DAG, scheduled on that asset, runs after it and loads the manifest's masks into SQLite."""
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 5, seed=13)
    out, database = tmp_path / "out", tmp_path / "masks.sqlite"
    producer = (EXAMPLES / "sam3_product_photos.py").read_text().replace('schedule="@hourly"', "schedule=None")
    consumer = (EXAMPLES / "sam3_masks_to_table.py").read_text().replace("/tmp/sam3-output/masks.sqlite", str(database))
    assert "schedule=None" in producer and str(database) in consumer  # the copies differ only there
    dep.write_dag("sam3_product_photos.py", producer)
    dep.write_dag("sam3_masks_to_table.py", consumer)
    try:
        dep.wait_for_dag("sam3_product_photos")
        dep.wait_for_dag("sam3_masks_to_table")
        conf = {"input_folder": str(paths[0].parent), "output_path": str(out), "prompt": "box", "max_cost_usd": 1.0}
        run_id = dep.trigger("sam3_product_photos", conf=conf)
        assert dep.wait_for_run("sam3_product_photos", run_id, timeout=240) == "success"
        summary = dep.xcom("sam3_product_photos", run_id, "segment")
        [(extra,)] = dep.query(
            "SELECT e.extra FROM asset_event e WHERE e.source_dag_id = ? AND e.source_run_id = ?",
            ("sam3_product_photos", run_id),
        )
        extra = json.loads(extra) if isinstance(extra, str) else extra
        assert extra["manifest"] == summary["manifest"] and extra["succeeded"] == 5 and extra["cost_usd"] > 0

        def downstream_run():
            rows = dep.query(
                "SELECT run_id, run_type FROM dag_run WHERE dag_id = ? ORDER BY id", ("sam3_masks_to_table",)
            )
            return rows[-1] if rows else None

        found = wait_until(downstream_run, 120, 0.5, what="the scheduler creating the asset-triggered run")
        consumer_run, run_type = found
        assert run_type == "asset_triggered"
        assert dep.wait_for_run("sam3_masks_to_table", consumer_run, timeout=180) == "success"
        loaded = dep.xcom("sam3_masks_to_table", consumer_run, "load")
        assert loaded["manifests"] == [summary["manifest"]]
        import sqlite3

        with sqlite3.connect(database) as db:
            images = {image for (image,) in db.execute("SELECT image FROM sam3_masks")}
            count = db.execute("SELECT COUNT(*) FROM sam3_masks").fetchone()[0]
        assert images == {str(p) for p in paths} and count == loaded["rows"] >= 5
    finally:
        for dag_id in ("sam3_masks_to_table", "sam3_product_photos"):
            dep.stop_dag(dag_id)
        dep.remove_dag_file("sam3_masks_to_table.py")
        dep.remove_dag_file("sam3_product_photos.py")
