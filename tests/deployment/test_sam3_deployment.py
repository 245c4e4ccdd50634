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


def hold_the_only_slot(fal_emulator) -> str:
    """Submit a long request from the test that takes the account's only slot: the DAG's request then stays queued."""
    from PIL import Image

    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.media.inputs import prepare_image

    fal_emulator.configure(concurrency=1, service_time_s=600.0)
    image = Image.new("RGB", (40, 30), (10, 10, 10))
    return FalHook().submit("fal-ai/sam-3/image", {"image_url": prepare_image(image).url, "prompt": "x"}).request_id


def test_clearing_a_deferred_task_cancels_its_queued_request_at_fal(
    airflow_deployment, dag_writer, fal_emulator, photo
):
    dep = airflow_deployment
    blocker = hold_the_only_slot(fal_emulator)
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    sampler = dep.watch_task(dag_id, run_id, "segment")
    sampler.wait_for("deferred", timeout=60)
    wait_until(
        lambda: "queued at position" in dep.task_log(dag_id, run_id, "segment", try_number=1),
        60,
        0.2,
        what="the trigger polling the queued request",
    )
    queued = next(r["request_id"] for r in fal_emulator.requests() if r["request_id"] != blocker)

    dep.clear_task(dag_id, run_id, "segment", via="api")
    wait_until(
        lambda: "cancelled fal request" in dep.task_log(dag_id, run_id, "segment", try_number=1),
        60,
        0.2,
        what="the trigger's on_kill log line",
    )
    record = next(r for r in fal_emulator.requests() if r["request_id"] == queued)
    assert record["cancelled"] and not record["billed"]  # cancelled before it started: fal bills nothing
    dep.set_run_state(dag_id, run_id, "failed")  # stop try 2, which waits behind the blocker
    # Try 2 may still be submitting its own request: let it end here, or it lands in the next test's counters.
    wait_until(lambda: dep.task_state(dag_id, run_id, "segment") in FINISHED, 60, 0.2, what="try 2 ending")


def test_clearing_a_deferred_task_whose_request_runs_keeps_it_and_the_rerun_fetches_it(
    airflow_deployment, dag_writer, fal_emulator, photo
):
    """fal bills a request once it started, cancelled or not: a clear leaves a running request to finish, and the
    cleared task reattaches to it. One request, billed once, its result returned."""
    dep = airflow_deployment
    fal_emulator.configure(service_time_s=15.0)
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    dep.watch_task(dag_id, run_id, "segment").wait_for("deferred", timeout=60)
    wait_until(
        lambda: "running" in dep.task_log(dag_id, run_id, "segment", try_number=1),
        60,
        0.2,
        what="the trigger polling the running request",
    )
    dep.clear_task(dag_id, run_id, "segment", via="api")
    assert dep.wait_for_run(dag_id, run_id, timeout=120) == "success", dep.task_instances(dag_id, run_id)

    [record] = fal_emulator.requests()
    assert record["billed"] and not record["cancelled"]
    assert dep.xcom(dag_id, run_id, "segment")["request_id"] == record["request_id"]
    log1 = dep.task_log(dag_id, run_id, "segment", try_number=1)
    assert "has already started and is left alone" in log1
    later = "".join(dep.task_log(dag_id, run_id, "segment", try_number=n) for n in (2, 3))
    assert "Reattaching to request" in later or "already completed; fetching its result" in later


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
    """Each clear cancels the queued request (the trigger's on_kill) while the rerun starts: the rerun may
    reattach to the request being cancelled. It must submit anew and say so, never fail on the cancel; and the
    cancelled requests, which never started, cost nothing."""
    dep = airflow_deployment
    blocker = hold_the_only_slot(fal_emulator)  # the DAG's requests stay queued while the clears go on
    dag_id = dag_writer(dag_source(kill_after_submit=False))
    run_id = dep.trigger(dag_id, conf={"image": str(photo)}, watch=["segment"])
    clears = 10

    def own_requests() -> list[dict]:
        return [r for r in fal_emulator.requests() if r["request_id"] != blocker]

    def trigger_polling(number: int) -> bool:
        """The current try is deferred on request ``number + 1`` and its trigger runs in the triggerer (a clear
        before the trigger starts has nothing to cancel: the rerun reattaches, rightly, and pays nothing)."""
        if dep.task_state(dag_id, run_id, "segment") != "deferred" or len(own_requests()) < number + 1:
            return False
        return f"request {own_requests()[-1]['request_id']}:" in dep.trigger_logs(dag_id, run_id, "segment")

    for number in range(clears):
        wait_until(
            lambda: trigger_polling(number),
            90,
            0.2,
            what=f"the trigger polling request {number + 1} (before clear {number + 1})",
        )
        dep.clear_task(dag_id, run_id, "segment", via="api")
    wait_until(lambda: len(own_requests()) == clears + 1, 90, 0.2, what="the last rerun's request")
    fal_emulator.configure(concurrency=2, service_time_s=0.5)  # the last rerun's request starts and finishes
    assert dep.wait_for_run(dag_id, run_id, timeout=180) == "success", dep.task_instances(dag_id, run_id)

    requests = own_requests()
    assert len(requests) == clears + 1  # one request per try: none reused after its cancel
    assert sum(1 for r in requests if r.get("cancelled")) == clears
    assert [r["request_id"] for r in requests if r["billed"]] == [requests[-1]["request_id"]]  # paid once
    document = dep.xcom(dag_id, run_id, "segment")
    assert document["request_id"] == requests[-1]["request_id"] and not requests[-1].get("cancelled")
    tries = dep.try_number(dag_id, run_id, "segment")
    logs = [dep.task_log(dag_id, run_id, "segment", try_number=n) for n in range(1, tries + 1)]
    assert not any("FalRequestCancelledError" in log for log in logs), "a rerun failed on its cancelled request"
    # Each rerun said why it paid for a new request (whether or not it had reattached to the one being cancelled).
    assert sum(1 for log in logs[1:] if "submitting anew" in log or "submitting the image anew" in log) >= clears
