"""The operators' fal queue options reach fal as its headers; bad ones fail the task before anything is sent."""

from __future__ import annotations

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator, SegmentVideoOperator

OPTIONS = {
    "priority": "low",
    "start_timeout": 600,
    "hint": "gpu-a",
    "media_expires_in": "1h",
    "store_io": False,
}


@dag(dag_id="sam3_submit_options", schedule=None, params={"image": "", "video_url": ""})
def submit_options():
    for deferrable in (True, False):
        SegmentImageOperator(
            task_id=f"image_{'deferred' if deferrable else 'worker'}",
            image="{{ params.image }}",
            prompt="square",
            deferrable=deferrable,
            poll_interval=0.2,
            **OPTIONS,
        )
    SegmentVideoOperator(
        task_id="video", video_url="{{ params.video_url }}", prompt="person", poll_interval=0.2, media_expires_in=7200
    )


@dag(dag_id="sam3_low_priority_without_deadline", schedule=None, params={"image": ""})
def low_without_deadline():
    SegmentImageOperator(task_id="seg", image="{{ params.image }}", prompt="square", priority="low")


DAG, LOW = submit_options(), low_without_deadline()


def test_every_option_reaches_fal_as_its_header_in_both_modes(run_dag, photo, fal_emulator):
    video = fal_emulator.host_file(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "clip.mp4", "video/mp4")
    results = run_dag(DAG, image=str(photo), video_url=video)
    assert all(results[t][0] == "success" for t in ("image_deferred", "image_worker", "video")), results
    by_id = {r["request_id"]: r for r in fal_emulator.requests()}
    for task in ("image_deferred", "image_worker"):
        headers = by_id[results[task][1]["request_id"]]["headers"]
        assert headers == {
            "x-fal-queue-priority": "low",
            "x-fal-request-timeout": "600.0",
            "x-fal-runner-hint": "gpu-a",
            "x-fal-object-lifecycle-preference": '{"expiration_duration_seconds": 3600}',
            "x-fal-store-io": "0",
        }
    video_headers = by_id[results["video"][1]["request_id"]]["headers"]
    assert video_headers == {"x-fal-object-lifecycle-preference": '{"expiration_duration_seconds": 7200}'}


def test_low_priority_without_start_timeout_fails_before_sending(run_dag, photo, fal_emulator, capfd):
    results = run_dag(LOW, image=str(photo))
    assert results["seg"][0] == "failed"
    out, err = capfd.readouterr()
    assert "priority: 'low' without start_timeout" in out + err
    assert fal_emulator.counters()["submissions"]["total"] == 0


@pytest.mark.parametrize(("option", "value"), [("media_expires_in", "forever"), ("store_io", "no")])
def test_a_bad_option_is_refused_naming_it(option, value, photo):
    operator = SegmentImageOperator(task_id="seg", image=str(photo), prompt="square", **{option: value})
    from airflow_provider_sam3.exceptions import InputValidationError

    with pytest.raises(InputValidationError) as caught:
        operator.validate({})
    assert caught.value.field == option
