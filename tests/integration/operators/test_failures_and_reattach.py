"""Failure paths fail the task with a clear message; retries reattach instead of paying twice; timeouts cancel."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.queue import FalQueueOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator, SegmentImageRleOperator

PARAMS = {"image": ""}


def task_log_text(capfd) -> str:
    """Everything the tasks wrote: under dag.test() task logs go to the process's stdout and stderr."""
    out, err = capfd.readouterr()
    return out + err


@dag(dag_id="sam3_fail_no_masks", schedule=None, params=PARAMS)
def no_masks():
    # A photo of one flat colour holds nothing to segment: image-rle answers 422 "No masks generated".
    SegmentImageRleOperator(
        task_id="rle", image="{{ params.image }}", prompt="shoe", deferrable=True, poll_interval=0.2, retries=2
    )


@dag(dag_id="sam3_fail_remote_validation", schedule=None, params=PARAMS)
def remote_validation():
    # Valid locally, but the emulator (like fal) cannot download this URL: fal answers 422 on the result.
    FalQueueOperator(
        task_id="seg",
        endpoint_id="fal-ai/sam-3/image",
        deferrable=True,
        poll_interval=0.2,
        arguments={"image_url": "https://unreachable.invalid/photo.png", "prompt": "x"},
        retries=2,
    )


@dag(dag_id="sam3_fail_app_error", schedule=None, params=PARAMS)
def app_error():
    SegmentImageOperator(task_id="seg", image="{{ params.image }}", prompt="x", deferrable=False, poll_interval=0.2)


@dag(dag_id="sam3_fail_bad_key", schedule=None, params=PARAMS)
def bad_key():
    SegmentImageOperator(
        task_id="seg", image="{{ params.image }}", prompt="x", fal_conn_id="fal_wrong", deferrable=True, retries=3
    )


@dag(dag_id="sam3_timeout_cancels", schedule=None, params=PARAMS)
def timeout_cancels():
    SegmentImageOperator(
        task_id="seg", image="{{ params.image }}", prompt="x", deferrable=True, timeout=1.5, poll_interval=0.2
    )


@dag(dag_id="sam3_timeout_cancels_sync", schedule=None, params=PARAMS)
def timeout_cancels_sync():
    SegmentImageOperator(
        task_id="seg", image="{{ params.image }}", prompt="x", deferrable=False, timeout=1.5, poll_interval=0.2
    )


@dag(dag_id="sam3_retry_reattaches", schedule=None, params=PARAMS)
def retry_reattaches():
    SegmentImageOperator(
        task_id="seg",
        image="{{ params.image }}",
        prompt="x",
        deferrable=False,
        poll_interval=0.2,
        retries=2,
        retry_delay=0,
    )


@dag(dag_id="sam3_retry_finds_it_done", schedule=None, params=PARAMS)
def retry_finds_it_done():
    SegmentImageOperator(
        task_id="seg",
        image="{{ params.image }}",
        prompt="x",
        deferrable=True,
        poll_interval=0.2,
        retries=1,
        retry_delay=0,
    )


@dag(dag_id="sam3_bad_input", schedule=None, params=PARAMS)
def bad_input():
    SegmentImageOperator(task_id="seg", image="{{ params.image }}", prompt="x", max_masks=33, deferrable=True)


DAGS = {
    d.dag_id: d
    for d in (
        no_masks(),
        remote_validation(),
        app_error(),
        bad_key(),
        timeout_cancels(),
        timeout_cancels_sync(),
        retry_reattaches(),
        retry_finds_it_done(),
        bad_input(),
    )
}


def test_no_masks_fails_once_with_the_reason_and_is_not_retried(run_dag, tmp_path, fal_emulator, capfd):
    from PIL import Image

    flat = tmp_path / "flat.png"
    Image.new("RGB", (40, 30), (128, 128, 128)).save(flat)
    results = run_dag(DAGS["sam3_fail_no_masks"], image=str(flat))
    assert results["rle"][0] == "failed"
    text = task_log_text(capfd)
    assert "No masks generated" in text and "the prompt matched nothing" in text
    assert "not retried" in text
    assert fal_emulator.counters()["submissions"]["total"] == 1  # retries=2, but a retry would pay for nothing


def test_fal_side_422_lists_the_field(run_dag, photo, fal_emulator, capfd):
    results = run_dag(DAGS["sam3_fail_remote_validation"], image=str(photo))
    assert results["seg"][0] == "failed"
    text = task_log_text(capfd)
    assert "fal rejected the input: image_url:" in text
    assert fal_emulator.counters()["submissions"]["total"] == 1


def test_app_error_fails_the_task_with_the_request_named(run_dag, photo, fal_emulator, capfd):
    fal_emulator.add_fault("app_500", target="submit", first=1)
    results = run_dag(DAGS["sam3_fail_app_error"], image=str(photo))
    assert results["seg"][0] == "failed"
    request_id = fal_emulator.requests()[0]["request_id"]
    text = task_log_text(capfd)
    assert f"fal-ai/sam-3/image request {request_id}: the model app failed" in text
    assert "does not bill failed requests" in text


def test_bad_key_fails_without_retries_and_never_shows_the_key(run_dag, photo, fal_emulator, capfd, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_FAL_WRONG",
        json.dumps({"conn_type": "fal", "password": "sentinel-wrong-key-9f3", "host": fal_emulator.host}),
    )
    results = run_dag(DAGS["sam3_fail_bad_key"], image=str(photo))
    assert results["seg"][0] == "failed"
    text = task_log_text(capfd)
    assert "fal rejected the API key during submit" in text and "not retried" in text
    assert "sentinel-wrong-key-9f3" not in text
    assert fal_emulator.counters()["submissions"]["total"] == 0


@pytest.mark.parametrize("dag_id", ["sam3_timeout_cancels", "sam3_timeout_cancels_sync"])
def test_timeout_cancels_the_remote_request(run_dag, photo, fal_emulator, capfd, dag_id):
    fal_emulator.configure(service_time_s=30)
    results = run_dag(DAGS[dag_id], image=str(photo))
    assert results["seg"][0] == "failed"
    assert fal_emulator.counters()["cancels"]["total"] == 1
    assert "deadline passed" in task_log_text(capfd)
    assert fal_emulator.requests()[0]["cancelled"] is True


def test_retry_after_a_failure_mid_wait_reattaches_without_a_second_submission(
    run_dag, photo, fal_emulator, capfd, monkeypatch
):
    from airflow_provider_sam3.hooks import retries as hook_retries
    from airflow_provider_sam3.hooks.backoff import Backoff

    monkeypatch.setattr(hook_retries, "RETRY_BACKOFF", Backoff(first=0.01, cap=0.02))
    fal_emulator.configure(service_time_s=1.0)
    # 5 polls in a row of the hook's 5 attempts each: try 1 fails mid-wait
    fal_emulator.add_fault("runner_503", target="status", first=25)
    results = run_dag(DAGS["sam3_retry_reattaches"], image=str(photo))
    assert results["seg"][0] == "success"
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 1
    text = task_log_text(capfd)
    assert "Reattaching to request" in text or "already completed; fetching its result" in text
    assert results["seg"][1]["request_id"] == fal_emulator.requests()[0]["request_id"]


def test_retry_of_a_finished_request_fetches_it_without_deferring_again(
    run_dag, photo, fal_emulator, capfd, monkeypatch
):
    """A deferral costs a round trip through the triggerer (and, in Airflow 3.3.2, exposes the task to the
    scheduler's stale defer-exit race): a retry that finds its request finished fetches it on the worker."""
    from airflow_provider_sam3.hooks import retries as hook_retries
    from airflow_provider_sam3.hooks.backoff import Backoff

    monkeypatch.setattr(hook_retries, "RETRY_BACKOFF", Backoff(first=0.01, cap=0.02))
    fal_emulator.add_fault("runner_503", target="result", first=6)  # outlasts the hook's attempts: try 1 fails
    results = run_dag(DAGS["sam3_retry_finds_it_done"], image=str(photo))
    assert results["seg"][0] == "success"
    text = task_log_text(capfd)
    assert "already completed; fetching its result" in text
    assert text.count("Pausing task as DEFERRED") == 1, "the retry deferred again on a finished request"
    assert fal_emulator.counters()["submissions"]["total"] == 1


def test_bad_input_fails_before_any_submission(run_dag, photo, fal_emulator, capfd):
    results = run_dag(DAGS["sam3_bad_input"], image=str(photo))
    assert results["seg"][0] == "failed"
    assert "max_masks: Input should be less than or equal to 32" in task_log_text(capfd)
    assert fal_emulator.counters()["submissions"]["total"] == 0
