"""Numbers that would disable a check (NaN, +-inf), booleans posing as numbers, coordinates outside the image and
over-long prompts are refused before anything is submitted, naming the field: in every operator, the sensor and the
connection's extras. The emulator counts submissions: every case asserts there were none.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.operators import sam3 as ops
from airflow_provider_sam3.operators.preflight import finite_number, whole_number
from airflow_provider_sam3.operators.queue import FalQueueOperator

NAN, INF = float("nan"), float("inf")
VIDEO = "https://media.example.com/clip.mp4"
MESH = "https://media.example.com/body.ply"
IMAGE = object()  # replaced by the 96x64 photo


def nothing_sent(emulator) -> bool:
    counters = emulator.counters()
    return (counters["submissions"]["total"], counters["status_calls"], counters["result_calls"]) == (0, 0, 0)


# (id, operator, kwargs, field the error names)
OPERATOR_CASES: list[tuple[str, type, dict[str, Any], str]] = [
    ("start_timeout_inf", ops.SegmentImageOperator, {"start_timeout": INF}, "start_timeout"),
    ("start_timeout_nan", ops.SegmentImageOperator, {"start_timeout": NAN}, "start_timeout"),
    ("start_timeout_true", ops.SegmentImageOperator, {"start_timeout": True}, "start_timeout"),
    ("start_timeout_a_year", ops.SegmentImageOperator, {"start_timeout": 365 * 86400}, "start_timeout"),
    ("poll_interval_inf", ops.SegmentImageOperator, {"poll_interval": INF}, "poll_interval"),
    ("poll_interval_nan", ops.SegmentImageRleOperator, {"poll_interval": NAN}, "poll_interval"),
    ("poll_interval_true", ops.SegmentImageOperator, {"poll_interval": True}, "poll_interval"),
    ("max_poll_interval_inf", ops.SegmentImageOperator, {"max_poll_interval": INF}, "max_poll_interval"),
    ("timeout_ten_years", ops.SegmentImageOperator, {"timeout": timedelta(days=3650)}, "timeout"),
    ("max_masks_true", ops.SegmentImageOperator, {"max_masks": True}, "max_masks"),
    ("max_masks_nan", ops.SegmentImageRleOperator, {"max_masks": NAN}, "max_masks"),
    ("max_masks_fraction", ops.SegmentImageOperator, {"max_masks": 2.5}, "max_masks"),
    (
        "threshold_nan",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO, "detection_threshold": NAN},
        "detection_threshold",
    ),
    (
        "threshold_nan_string",
        ops.SegmentVideoRleOperator,
        {"video_url": VIDEO, "detection_threshold": "nan"},
        "detection_threshold",
    ),
    (
        "threshold_inf",
        ops.SegmentVideoObjectsOperator,
        {"video_url": VIDEO, "detection_threshold": INF},
        "detection_threshold",
    ),
    (
        "threshold_true",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO, "detection_threshold": True},
        "detection_threshold",
    ),
    ("threshold_3d_nan", ops.Reconstruct3DObjectsOperator, {"detection_threshold": NAN}, "detection_threshold"),
    ("focal_length_inf", ops.Align3DOperator, {"body_mesh_url": MESH, "focal_length": INF}, "focal_length"),
    ("focal_length_inf_string", ops.Align3DOperator, {"body_mesh_url": MESH, "focal_length": "inf"}, "focal_length"),
    ("focal_length_true", ops.Align3DOperator, {"body_mesh_url": MESH, "focal_length": True}, "focal_length"),
    ("seed_true", ops.Reconstruct3DObjectsOperator, {"seed": True}, "seed"),
    (
        "max_num_objects_true",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO, "version": "3.1", "max_num_objects": True},
        "max_num_objects",
    ),
    (
        "frame_index_true",
        ops.SegmentVideoRleOperator,
        {"video_url": VIDEO, "mask_url": VIDEO, "frame_index": True},
        "frame_index",
    ),
    (
        "object_id_true",
        ops.SegmentImageOperator,
        {"point_prompts": [{"x": 5, "y": 5, "object_id": True}]},
        "point_prompts[0].object_id",
    ),
    ("point_x_huge", ops.SegmentImageOperator, {"point_prompts": [{"x": 10**12, "y": 5}]}, "point_prompts[0].x"),
    (
        "point_x_beyond_the_image",
        ops.SegmentImageOperator,
        {"point_prompts": [{"x": 96, "y": 5}]},
        "point_prompts[0].x",
    ),
    (
        "point_y_beyond_the_image",
        ops.SegmentImageRleOperator,
        {"point_prompts": [{"x": 5, "y": 64}]},
        "point_prompts[0].y",
    ),
    (
        "box_beyond_the_image",
        ops.SegmentImageOperator,
        {"box_prompts": [{"x_min": 10, "y_min": 10, "x_max": 97, "y_max": 40}]},
        "box_prompts[0].x_max",
    ),
    (
        "box_starting_beyond_the_image",
        ops.Reconstruct3DObjectsOperator,
        {"box_prompts": [{"x_min": 200, "y_min": 10, "x_max": 300, "y_max": 40}]},
        "box_prompts[0].x_min",
    ),
    (
        "box_corner_true",
        ops.SegmentImageOperator,
        {"box_prompts": [{"x_min": True, "y_min": 10, "x_max": 40, "y_max": 40}]},
        "box_prompts[0].x_min",
    ),
    ("point_x_nan", ops.SegmentImageOperator, {"point_prompts": [{"x": NAN, "y": 5}]}, "point_prompts[0].x"),
    ("prompt_too_long", ops.SegmentImageOperator, {"prompt": "shoe " * 201}, "prompt"),
    ("prompt_ten_megabytes", ops.SegmentVideoOperator, {"video_url": VIDEO, "prompt": "x" * 10_000_000}, "prompt"),
    (
        "queue_operator_point_beyond_image",
        FalQueueOperator,
        {"endpoint_id": "fal-ai/sam-3/image", "arguments": {"image_url": IMAGE, "point_prompts": [{"x": 500, "y": 1}]}},
        "point_prompts[0].x",
    ),
]


def _with_photo(value: Any, photo: str) -> Any:
    if value is IMAGE:
        return photo
    if isinstance(value, dict):
        return {k: _with_photo(v, photo) for k, v in value.items()}
    return value


@pytest.mark.parametrize(
    ("case_id", "operator", "kwargs", "field"), OPERATOR_CASES, ids=[case[0] for case in OPERATOR_CASES]
)
def test_operator_numbers_are_checked_before_submission(case_id, operator, kwargs, field, photo, fal_emulator, connect):
    from airflow.sdk.exceptions import AirflowFailException

    kwargs = _with_photo(dict(kwargs), str(photo))
    if operator is not FalQueueOperator and "video_url" not in kwargs:
        kwargs.setdefault("image", str(photo))
    if operator in (ops.SegmentImageOperator, ops.SegmentImageRleOperator) and "prompt" not in kwargs:
        kwargs["prompt"] = "square"
    task = operator(task_id="t", deferrable=False, **kwargs)
    with pytest.raises(AirflowFailException) as raised:
        task.render_template_fields({})
        task.execute({})
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError), f"{type(cause).__name__}: {cause}"
    assert cause.field == field or field in getattr(cause, "fields", ()), (cause.field, str(cause))
    assert "not retried" in str(raised.value)
    assert nothing_sent(fal_emulator)


@pytest.mark.parametrize("value", [NAN, INF, -INF, "nan", True, "1h"])
def test_timeout_that_cannot_be_waited_for_fails_the_dag_file(value, fal_emulator):
    with pytest.raises(exc.InputValidationError) as raised:
        ops.SegmentImageOperator(task_id="t", image="https://media.example.com/a.png", prompt="x", timeout=value)
    assert raised.value.field == "timeout"
    assert nothing_sent(fal_emulator)


CONNECTION_CASES = [
    ({"poll_interval": "nan"}, "extra poll_interval"),
    ({"poll_interval": -1}, "extra poll_interval"),
    ({"poll_interval": "inf"}, "extra poll_interval"),
    ({"poll_interval": True}, "extra poll_interval"),
    ({"max_poll_interval": "nan"}, "extra max_poll_interval"),
    ({"request_timeout": "inf"}, "extra request_timeout"),
    ({"request_timeout": 0}, "extra request_timeout"),
    ({"request_timeout": "-5"}, "extra request_timeout"),
    ({"max_output_bytes": True}, "extra max_output_bytes"),
    ({"max_output_bytes": -1}, "extra max_output_bytes"),
    ({"max_output_bytes": "lots"}, "extra max_output_bytes"),
    ({"media_hosts": ["evil.example/path"]}, "extra media_hosts"),
    ({"media_hosts": 42}, "extra media_hosts"),
    ({"host": "http://queue.fal.run"}, "host"),
    ({"host": "queue.fal.run/evil"}, "host"),
    ({"host": "user@queue.fal.run"}, "host"),
    ({"host": "queue.fal.run."}, "host"),
]


@pytest.mark.parametrize(("extra", "names"), CONNECTION_CASES, ids=[repr(c[0]) for c in CONNECTION_CASES])
def test_connection_extras_are_checked_before_submission(extra, names, photo, fal_emulator, connect):
    from airflow.sdk.exceptions import AirflowFailException

    extra = dict(extra)
    connect(host=extra.pop("host", None), **extra)
    task = ops.SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    with pytest.raises(AirflowFailException) as raised:
        task.execute({})
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError)
    assert names in cause.field and "fal_default" in cause.field
    assert nothing_sent(fal_emulator)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"poke_interval": NAN}, "poke_interval"),
        ({"poke_interval": INF}, "poke_interval"),
        ({"timeout": INF}, "timeout"),
        ({"timeout": NAN}, "timeout"),
    ],
)
def test_sensor_numbers_are_checked_before_any_call(kwargs, field, fal_emulator, connect):
    """Airflow's own sensor refuses these when the DAG file is parsed; the sensor checks them again before its
    first call (a value set after construction, e.g. by a subclass), naming the field."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    base = f"https://{fal_emulator.host}/fal-ai/sam-3/requests/5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"
    reference = {
        "endpoint_id": "fal-ai/sam-3/image",
        "request_id": "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f",
        "status_url": f"{base}/status",
        "response_url": base,
        "cancel_url": f"{base}/cancel",
    }
    with pytest.raises((ValueError, OverflowError)):
        FalRequestSensor(task_id="wait", reference=reference, **{"poke_interval": 0.2, "timeout": 5, **kwargs})
    sensor = FalRequestSensor(task_id="wait", reference=reference, poke_interval=0.2, timeout=5)
    setattr(sensor, field, kwargs[field])
    with pytest.raises(AirflowFailException) as raised:
        sensor.execute({})
    assert raised.value.__cause__.field == field
    assert nothing_sent(fal_emulator)


# ---------------------------------------------------------------- the helpers the batch operator calls


@pytest.mark.parametrize(
    "value", [NAN, INF, -INF, "nan", "NaN", "inf", "-Infinity", True, False, "lots", [1], None, 10**400]
)
def test_finite_number_refuses(value):
    with pytest.raises(exc.InputValidationError) as raised:
        finite_number("max_cost_usd", value, minimum=0)
    assert raised.value.field == "max_cost_usd" and "allowed: a finite number" in str(raised.value)


def test_finite_number_accepts_and_bounds():
    assert finite_number("x", "12.5") == 12.5 and finite_number("x", 3) == 3.0
    assert finite_number("x", None, allow_none=True) is None
    assert finite_number("x", 0, minimum=0) == 0.0
    with pytest.raises(exc.InputValidationError, match="not above 0"):
        finite_number("x", 0, minimum=0, strict_minimum=True)
    with pytest.raises(exc.InputValidationError, match="above 10"):
        finite_number("x", 11, maximum=10)
    with pytest.raises(exc.InputValidationError, match="below 1"):
        finite_number("x", -0.5, minimum=1)
    assert not math.isnan(finite_number("x", "1e3"))


def test_whole_number():
    assert whole_number("n", "3") == 3 and whole_number("n", 3.0) == 3 and whole_number("n", " 7 ") == 7
    assert whole_number("n", None, allow_none=True) is None
    for bad in (True, 2.5, "2.5", NAN, INF, "many", None):
        with pytest.raises(exc.InputValidationError) as raised:
            whole_number("max_in_flight", bad, minimum=1)
        assert raised.value.field == "max_in_flight"
    with pytest.raises(exc.InputValidationError, match="below 1"):
        whole_number("n", 0, minimum=1)
    with pytest.raises(exc.InputValidationError, match="above 5"):
        whole_number("n", 6, maximum=5)


def test_a_zero_poll_interval_is_still_raised_to_the_floor(connect):
    """Extras that worked before keep working: 0 (or 0.01) polls at the 0.2 s floor; only NaN, infinity,
    booleans and negatives are refused."""
    from airflow_provider_sam3.hooks.fal import FalHook

    connect(poll_interval=0, max_poll_interval="0.01", request_timeout="30")
    settings = FalHook().get_settings()
    assert (settings.poll_interval, settings.max_poll_interval, settings.request_timeout) == (0.2, 0.2, 30.0)
