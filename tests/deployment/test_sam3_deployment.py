"""SAM 3 operators under a real `airflow standalone` (scheduler, triggerer, LocalExecutor) against the emulator.

Proves what dag.test() cannot: a real deferral through the triggerer, the trigger's on_kill cancelling the fal
request when a user clears the task, and a worker killed right after submitting not causing a second submission.
"""

from __future__ import annotations

import pytest
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(240)]

AIRFLOW_RESUME_RACE = """Airflow 3.3.2 sometimes processes the executor's late "success" event of the process that
deferred after the task was queued again for resuming, and marks the resumed try FAILED ("Executor ... reported that
the task instance ... [queued] finished"); seen in about one run in four on these 2-core machines. The DAGs therefore
have a spare retry, and the tests assert what matters whatever the try count: one submission, the same request id."""

FINISHED = ("success", "failed", "skipped", "upstream_failed", "removed")

SEGMENT_THEN_READ = '''
import os
import signal

import pendulum
from airflow.sdk import dag, task

from airflow_provider_sam3.models.results import SegmentationResult
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator


class DiesAfterSubmitOnFirstTry(SegmentImageOperator):
    """Kills its own worker process (SIGKILL, no cleanup) right after the request was submitted, on try 1."""

    def _reattach_or_submit(self, context, hook, request):
        outcome = super()._reattach_or_submit(context, hook, request)
        if KILL_AFTER_SUBMIT and context["ti"].try_number == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return outcome


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    seg = DiesAfterSubmitOnFirstTry(
        task_id="segment",
        image="{{ dag_run.conf['image'] }}",
        prompt="square",
        include_scores=True,
        include_boxes=True,
        deferrable=True,
        poll_interval=0.5,
        retries=2,  # one for the kill test, one spare for AIRFLOW_RESUME_RACE
        retry_delay=1,
    )

    @task
    def read(document):
        result = SegmentationResult.from_xcom(document)
        return {"urls": [m.url for m in result.masks], "scores": result.scores, "boxes": result.pixel_boxes}

    read(seg.output)


the_dag()
'''


def dag_source(kill_after_submit: bool) -> str:
    return SEGMENT_THEN_READ.replace("KILL_AFTER_SUBMIT", str(kill_after_submit))


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    """No fal connection at all: the deployment finds the emulator through FAL_KEY and FAL_QUEUE_RUN_HOST."""
    return dict(fal_emulator_server.env)


@pytest.fixture
def photo(tmp_path):
    from PIL import Image, ImageDraw

    path = tmp_path / "photo.png"
    image = Image.new("RGB", (96, 64), (20, 30, 40))
    ImageDraw.Draw(image).rectangle([30, 16, 61, 47], fill=(240, 220, 60))
    image.save(path)
    return path


def test_deferrable_segmentation_goes_through_the_triggerer_and_downstream_reads_masks(
    airflow_deployment, dag_writer, fal_emulator, photo
):
    dep = airflow_deployment
    fal_emulator.configure(service_time_s=3.0)
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment", "read"])
    assert dep.wait_for_run(dag_id, run_id, timeout=90) == "success", dep.task_instances(dag_id, run_id)

    states = dep.watch_task(dag_id, run_id, "segment").stop()
    assert "deferred" in states and states[-1] == "success", states
    assert dep.try_number(dag_id, run_id, "segment") <= 2  # 2 only after AIRFLOW_RESUME_RACE, which reattaches

    document = dep.xcom(dag_id, run_id, "segment")
    assert document["kind"] == "sam3.segmentation" and document["endpoint_id"] == "fal-ai/sam-3/image"
    assert document["masks"][0]["pixel_box"] == [30.0, 16.0, 62.0, 48.0]
    read = dep.xcom(dag_id, run_id, "read")
    assert read["urls"] == [document["masks"][0]["url"]] and read["scores"] == [document["masks"][0]["score"]]
    assert fal_emulator.counters()["submissions"]["total"] == 1

    log = dep.task_log(dag_id, run_id, "segment")
    assert "fal fal-ai/sam-3/image request" in log  # the trigger's status lines reach the task log
    assert fal_emulator.api_key not in log


def test_clearing_a_deferred_task_cancels_the_request_at_fal(airflow_deployment, dag_writer, fal_emulator, photo):
    dep = airflow_deployment
    fal_emulator.configure(service_time_s=120.0)
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    sampler = dep.watch_task(dag_id, run_id, "segment")
    sampler.wait_for("deferred", timeout=60)
    wait_until(
        lambda: "running" in dep.task_log(dag_id, run_id, "segment"), 30, 0.2, what="the trigger polling the request"
    )
    first_request = fal_emulator.requests()[0]["request_id"]

    dep.clear_task(dag_id, run_id, "segment", via="api")
    wait_until(
        lambda: fal_emulator.counters()["cancels"]["total"] >= 1, 30, 0.2, what="the emulator recording a cancel"
    )
    cancelled = {r["request_id"] for r in fal_emulator.requests() if r.get("cancelled")}
    assert first_request in cancelled
    wait_until(
        lambda: "cancelled fal request" in dep.task_log(dag_id, run_id, "segment", try_number=1),
        20,
        0.2,
        what="the trigger's on_kill log line",
    )
    dep.set_run_state(dag_id, run_id, "failed")  # stop try 2 from waiting two minutes
    # Try 2 may still be submitting its own request (the first one was cancelled): let it end here, or it lands in
    # the next test's emulator counters (the emulator is shared; a second "submission" seen under load came from here).
    wait_until(lambda: dep.task_state(dag_id, run_id, "segment") in FINISHED, 60, 0.2, what="try 2 ending")


def test_worker_killed_right_after_submit_does_not_submit_twice(airflow_deployment, dag_writer, fal_emulator, photo):
    dep = airflow_deployment
    fal_emulator.configure(service_time_s=4.0)
    dag_id = dag_writer(dag_source(kill_after_submit=True))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    assert dep.wait_for_run(dag_id, run_id, timeout=120) == "success", dep.task_instances(dag_id, run_id)

    assert dep.try_number(dag_id, run_id, "segment") >= 2  # try 1 died with SIGKILL
    assert fal_emulator.counters()["submissions"]["total"] == 1
    document = dep.xcom(dag_id, run_id, "segment")
    assert document["request_id"] == fal_emulator.requests()[0]["request_id"]
    log2 = dep.task_log(dag_id, run_id, "segment", try_number=2)
    assert "not submitting again" in log2 or "instead of paying again" in log2


def test_ten_clears_of_a_deferred_task_each_rerun_succeeds(airflow_deployment, dag_writer, fal_emulator, photo):
    """Each clear cancels the running request (the trigger's on_kill) while the rerun starts: the rerun may
    reattach to the request being cancelled. It must submit anew and say so, never fail on the cancel."""
    dep = airflow_deployment
    fal_emulator.configure(service_time_s=60.0)  # nothing finishes while the clears go on
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    clears = 10

    def trigger_polling(number: int) -> bool:
        """The current try is deferred on request ``number + 1`` and its trigger runs in the triggerer (a clear
        before the trigger starts has nothing to cancel: the rerun reattaches, rightly, and pays nothing)."""
        if dep.task_state(dag_id, run_id, "segment") != "deferred" or len(fal_emulator.requests()) < number + 1:
            return False
        log = dep.task_log(dag_id, run_id, "segment", try_number=dep.try_number(dag_id, run_id, "segment"))
        return f"request {fal_emulator.requests()[-1]['request_id']}:" in log

    for number in range(clears):
        wait_until(
            lambda: trigger_polling(number),
            90,
            0.2,
            what=f"the trigger polling request {number + 1} (before clear {number + 1})",
        )
        if number == clears - 1:
            fal_emulator.configure(service_time_s=0.5)  # the last rerun's request finishes
        dep.clear_task(dag_id, run_id, "segment", via="api")
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)

    requests = fal_emulator.requests()
    assert len(requests) == clears + 1  # one request per try: none reused after its cancel, none paid twice
    assert sum(1 for r in requests if r.get("cancelled")) == clears
    document = dep.xcom(dag_id, run_id, "segment")
    assert document["request_id"] == requests[-1]["request_id"] and not requests[-1].get("cancelled")
    tries = dep.try_number(dag_id, run_id, "segment")
    logs = [dep.task_log(dag_id, run_id, "segment", try_number=n) for n in range(1, tries + 1)]
    assert not any("FalRequestCancelledError" in log for log in logs), "a rerun failed on its cancelled request"
    # Each rerun said why it paid for a new request (whether or not it had reattached to the one being cancelled).
    assert sum(1 for log in logs[1:] if "submitting anew" in log or "submitting the image anew" in log) >= clears
