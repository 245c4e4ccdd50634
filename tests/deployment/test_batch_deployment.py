"""The batch operator under a real `airflow standalone` against the emulator: faults, a triggerer restart while the
batch waits, and a worker killed in the middle of submitting. Every image ends in the manifest, paid once."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from photos import write_photos
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(420)]

BATCH_DAG = '''
import os
import signal

import pendulum
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


class DiesWhileSubmitting(Sam3BatchOperator):
    """On try 1, SIGKILLs its own worker once KILL_AFTER requests were submitted and saved (0: never)."""

    async def _submit_due(self, hook, endpoint, state, bodies, store, on_submitted):
        def watched(entries):
            on_submitted(entries)
            done = sum(1 for e in state.entries.values() if e.state == "submitted")
            if KILL_AFTER and done >= KILL_AFTER and self._try_number == 1:
                os.kill(os.getpid(), signal.SIGKILL)

        return await super()._submit_due(hook, endpoint, state, bodies, store, watched)

    def execute(self, context):
        self._try_number = context["ti"].try_number
        return super().execute(context)


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    DiesWhileSubmitting(
        task_id="segment",
        images="{{ dag_run.conf['images'] }}",
        output_path="{{ dag_run.conf['out'] }}",
        arguments={"prompt": "box"},
        deferrable=True,
        on_image_failure="report",
        poll_interval=0.5,
        retries=2,  # one for the kill, one spare for Airflow 3.3.2's resume race (see test_sam3_deployment)
        retry_delay=1,
    )


the_dag()
'''


def dag_source(kill_after: int) -> str:
    return BATCH_DAG.replace("KILL_AFTER", str(kill_after))


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    # A restarted triggerer adopts the dead one's triggers once its heartbeat is this many seconds old.
    return {**fal_emulator_server.env, "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1"}


def manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def assert_every_image_once(out: Path, paths: list[Path], summary: dict, fal_emulator) -> list[dict]:
    rows = manifest(out)
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    assert all(row["status"] == "succeeded" for row in rows), [r for r in rows if r["status"] != "succeeded"][:3]
    for row in rows:
        assert row["masks"], row
        for mask in row["masks"]:
            assert Path(mask["location"].removeprefix("file://")).is_file(), mask
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == len(paths) + summary["resubmissions"] == summary["submissions"]
    return rows


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
    wait_until(lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2, 60, 0.2,
               what="the batch trigger running in the triggerer")

    counters = fal_emulator.counters()
    waiting_at_kill = counters["submissions"]["total"] - counters["completed"]
    dep.kill_component("triggerer", signal.SIGKILL)
    assert waiting_at_kill >= 200, counters  # the new triggerer has most of the batch to finish
    dep.restart_triggerer()
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
    dag_id = dag_writer(dag_source(kill_after=40))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    assert dep.wait_for_run(dag_id, run_id, timeout=240) == "success", dep.task_instances(dag_id, run_id)

    assert dep.try_number(dag_id, run_id, "segment") >= 2  # try 1 died with SIGKILL mid-submission
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (120, 120, 0)
    assert_every_image_once(out, paths, summary, fal_emulator)
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "Reattached to this batch's previous try" in log2 and "not submitted again" in log2


def test_clearing_a_deferred_batch_cancels_its_requests_and_reruns(airflow_deployment, dag_writer, fal_emulator,
                                                                   tmp_path):
    dep = airflow_deployment
    paths = write_photos(tmp_path / "in", 40, seed=9)
    out = tmp_path / "out"
    fal_emulator.configure(concurrency=2, service_time_s=60.0)  # nothing finishes before the clear
    dag_id = dag_writer(dag_source(kill_after=0))
    run_id = dep.trigger(dag_id, conf={"images": str(paths[0].parent), "out": str(out)}, watch=["segment"])
    dep.watch_task(dag_id, run_id, "segment").wait_for("deferred", timeout=120)
    wait_until(lambda: len(dep.task_log_paths(dag_id, run_id, "segment")) >= 2, 60, 0.2,
               what="the batch trigger running in the triggerer")
    first_requests = {r["request_id"] for r in fal_emulator.requests()}
    assert len(first_requests) == 40

    dep.clear_task(dag_id, run_id, "segment", via="api")
    wait_until(lambda: fal_emulator.counters()["cancels"]["total"] >= 40, 40, 0.2,
               what="the trigger's on_kill cancelling the batch's 40 requests")
    assert {r["request_id"] for r in fal_emulator.requests() if r.get("cancelled")} == first_requests
    wait_until(lambda: "sent 40 cancels to fal" in dep.task_log(dag_id, run_id, "segment", try_number=1), 30, 0.2,
               what="the trigger's on_kill log line")

    # The cleared task runs again: it finds its requests cancelled and submits each image once more.
    fal_emulator.configure(concurrency=8, service_time_s=0.1)
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)
    summary = dep.xcom(dag_id, run_id, "segment")
    assert (summary["images"], summary["succeeded"], summary["resubmissions"]) == (40, 40, 40)
    rows = assert_every_image_once(out, paths, summary, fal_emulator)
    assert not {row["request_id"] for row in rows} & first_requests  # no result comes from a cancelled request
