"""An ``output_path`` the worker cannot write is refused before paying, naming the field: a path under a file, in
``/sys`` or ``/proc``, or a file itself. Before this check, a path in ``/sys`` passed, the request was paid, and
copying failed afterwards with a raw ``PermissionError``.
"""

from __future__ import annotations

import os

import pytest

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.operators import sam3 as ops
from airflow_provider_sam3.operators.preflight import PROBE_PREFIX, preflight_output_path
from airflow_provider_sam3.operators.queue import FalQueueOperator

UNWRITABLE = {
    "under_a_file": ("{file}/out", "is a file, so"),
    "the_file_itself": ("{file}", "is a file, not a directory"),
    "in_sys": ("/sys/sam3-outputs", "cannot be created"),
    "existing_sys_folder": ("/sys/kernel", "is not writable"),
    "in_proc": ("/proc/sam3-outputs", "cannot be created"),
    "under_dev_null": ("/dev/null/out", "is a file, so"),
    "file_url_under_a_file": ("file://{file}/out", "is a file, so"),
}


def nothing_sent(emulator) -> bool:
    counters = emulator.counters()
    return (counters["submissions"]["total"], counters["status_calls"], counters["result_calls"]) == (0, 0, 0)


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file.txt"
    path.write_text("x")
    return str(path)


def operators(photo: str) -> dict[str, object]:
    return {
        "segment": lambda out: ops.SegmentImageOperator(
            task_id="t", image=photo, prompt="square", output_path=out, deferrable=False
        ),
        "embed": lambda out: ops.EmbedImageOperator(task_id="t", image=photo, output_path=out, deferrable=True),
        "queue": lambda out: FalQueueOperator(
            task_id="t",
            endpoint_id="fal-ai/sam-3/image-rle",
            arguments={"image_url": photo, "prompt": "square"},
            output_path=out,
        ),
    }


@pytest.mark.parametrize("case", list(UNWRITABLE))
@pytest.mark.parametrize("kind", ["segment", "embed", "queue"])
def test_unwritable_output_path_fails_before_paying(case, kind, photo, a_file, fal_emulator, connect):
    from airflow.sdk.exceptions import AirflowFailException

    template, says = UNWRITABLE[case]
    task = operators(str(photo))[kind](template.format(file=a_file))
    with pytest.raises(AirflowFailException) as raised:
        task.execute({})
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError) and cause.field == "output_path"
    assert says in str(cause) and "nothing was sent to fal" in str(cause)
    assert "not retried" in str(raised.value)
    assert nothing_sent(fal_emulator)
    assert not os.path.exists("/sys/sam3-outputs") and not os.path.exists("/proc/sam3-outputs")


@pytest.mark.parametrize("case", ["under_a_file", "in_sys"])
def test_sensor_refuses_an_unwritable_output_path_before_polling(case, a_file, fal_emulator, connect):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    rid = "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"
    base = f"https://{fal_emulator.host}/fal-ai/sam-3/requests/{rid}"
    reference = {
        "endpoint_id": "fal-ai/sam-3/image",
        "request_id": rid,
        "status_url": f"{base}/status",
        "response_url": base,
        "cancel_url": f"{base}/cancel",
    }
    sensor = FalRequestSensor(
        task_id="wait",
        reference=reference,
        poke_interval=0.2,
        timeout=5,
        output_path=UNWRITABLE[case][0].format(file=a_file),
    )
    with pytest.raises(AirflowFailException) as raised:
        sensor.execute({})
    assert raised.value.__cause__.field == "output_path"
    assert nothing_sent(fal_emulator)


def test_a_missing_path_is_created_and_left_empty(tmp_path):
    target = tmp_path / "runs" / "2026-11-30" / "masks"
    resolved = preflight_output_path("output_path", str(target))
    assert str(resolved) == f"file://{target}"
    assert target.is_dir() and list(target.iterdir()) == []


def test_an_existing_folder_keeps_its_files_and_gets_no_probe(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    preflight_output_path("output_path", f"file://{tmp_path}")
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]
    assert not any(name.startswith(PROBE_PREFIX) for name in os.listdir(tmp_path))


def test_object_stores_are_resolved_without_a_network_check():
    path = preflight_output_path("output_path", "memory://bucket/masks")
    assert str(path) == "memory://bucket/masks"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("relative/out", "is relative"),
        ("", "got ''"),
        (42, "got 42"),
        ("nosuch://bucket/x", "cannot be used"),
    ],
)
def test_the_field_named_is_the_callers(value, says):
    """The batch calls the helper with its own field name; the error carries that name, whatever the cause."""
    with pytest.raises(exc.InputValidationError) as raised:
        preflight_output_path("images_output_path", value)
    assert raised.value.field == "images_output_path" and says in str(raised.value)


def test_the_callers_field_names_an_unwritable_path(a_file):
    with pytest.raises(exc.InputValidationError) as raised:
        preflight_output_path("batch.output_path", f"{a_file}/x")
    assert raised.value.field == "batch.output_path" and str(raised.value).startswith("batch.output_path: ")
