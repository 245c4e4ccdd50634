"""The batch operator under a real `airflow standalone` against the emulator: faults, a triggerer restart while the
batch waits, and a worker killed in the middle of submitting. Every image ends in the manifest, paid once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from batch_dags import assert_every_image_once, dag_source, unrecorded_requests
from photos import write_photos
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    # A restarted triggerer adopts the dead one's triggers once its heartbeat is this many seconds old.
    return {
        **fal_emulator_server.env,
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
    dag_id = dag_writer(dag_source(kill_after=0))
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
    assert_every_image_once(out, paths, summary, fal_emulator, unrecorded_requests(dep, dag_id, run_id))
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
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (120, 120, 0)
    assert_every_image_once(out, paths, summary, fal_emulator, unrecorded_requests(dep, dag_id, run_id))
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "with the image list of its first try (120 rows" in log2 and "not submitted again" in log2


def test_clearing_a_deferred_batch_cancels_its_requests_and_reruns(
    airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 40, seed=9)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=2, service_time_s=60.0)  # nothing finishes before the clear
    dag_id = dag_writer(dag_source(kill_after=0))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    dep.watch_task(dag_id, run_id, "segment").wait_for("deferred", timeout=120)
    wait_until(
        lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2,
        60,
        0.2,
        what="the batch trigger running in the triggerer",
    )
    first_requests = {r["request_id"] for r in fal_emulator.requests()}
    assert len(first_requests) == 40

    dep.clear_task(dag_id, run_id, "segment", via="api")
    wait_until(
        lambda: fal_emulator.counters()["cancels"]["total"] >= 40,
        40,
        0.2,
        what="the trigger's on_kill cancelling the batch's 40 requests",
    )
    assert {r["request_id"] for r in fal_emulator.requests() if r.get("cancelled")} == first_requests
    wait_until(
        lambda: "sent 40 cancels to fal" in dep.task_log(dag_id, run_id, "segment", try_number=1),
        30,
        0.2,
        what="the trigger's on_kill log line",
    )

    # The cleared task runs again: it finds its requests cancelled and submits each image once more.
    fal_emulator.configure(concurrency=8, service_time_s=0.1)
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (40, 40, 40)
    rows = assert_every_image_once(out, paths, summary, fal_emulator, unrecorded_requests(dep, dag_id, run_id))
    assert not {row["request_id"] for row in rows} & first_requests  # no result comes from a cancelled request
    billed = {r["request_id"] for r in fal_emulator.requests() if r["state"] == "COMPLETED" and not r["cancelled"]}
    assert billed == {row["request_id"] for row in rows}


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferrable", "worker"])
def test_worker_killed_while_one_submit_is_slow_pays_each_image_once(
    deferrable, airflow_deployment, dag_writer, fal_emulator, tmp_path
):
    """The first submit answers slowly; the other slot goes on, and the worker dies once 30 requests are saved,
    while that call is still open. Each answered submit was saved as it returned, so the rerun submits only the
    image whose answer never came (fal created nothing for it: the connection died before it read the body)."""
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
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (60, 60, 0)
    assert_every_image_once(out, paths, summary, fal_emulator, unrecorded_requests(dep, dag_id, run_id))
    assert counters["completed"] == 60 == counters["submissions"]["total"], counters
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "with the image list of its first try (60 rows" in log2 and "not submitted again" in log2


MAPPED_DAG = """
import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    @task
    def lists(**context):
        return context["dag_run"].conf["lists"]

    Sam3BatchOperator.partial(
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
    assert fal_emulator.counters()["submissions"]["total"] == 36


def product_photos_source() -> str:
    source = (Path(__file__).resolve().parents[2] / "dags_examples" / "sam3_product_photos.py").read_text()
    assert 'schedule="@hourly",' in source
    return source.replace('schedule="@hourly",', 'dag_id="{dag_id}", schedule=None,')  # as shipped, own dag_id


def test_two_runs_of_the_product_photo_example_keep_both_manifests(
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
    for summary, expected in (
        (first, [str(p) for p in paths]),
        (second, [str(inputs / f"zz_new_{n}.png") for n in range(2)]),
    ):
        manifest = Path(summary["manifest"].removeprefix("file://"))
        rows = [json.loads(line) for line in manifest.read_text().splitlines()]
        assert [row["source"] for row in rows] == expected
        assert all(row["status"] == "succeeded" for row in rows)
        assert Path(summary["metadata"].removeprefix("file://")).is_file()
    assert len(list(out.rglob("manifest.jsonl"))) == 2
    assert fal_emulator.counters()["submissions"]["total"] == 7
