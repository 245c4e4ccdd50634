"""Nothing is written outside ``output_path``: request ids that would climb out of it are refused where they enter.

Entry points: fal's answer to a submit (a hostile queue), a reference handed to the sensor, and a result document
given to ``copy_outputs`` directly (the path the batch and the single operators share). Each hostile id is refused
with a final error, and the directory tree around ``output_path`` is unchanged.
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hostile import json_answer, submit_answer

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.hooks.trust import request_id_problem
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.results import build_result
from airflow_provider_sam3.storage.outputs import copy_outputs

ENDPOINT = "fal-ai/sam-3/image"
HOSTILE_IDS = {
    "parent": "..",
    "dot": ".",
    "climb": "../../outside",
    "absolute": "/tmp/sam3-outside",
    "nested": "a/b",
    "backslash_climb": "..\\..\\outside",
    "percent_encoded_climb": "..%2f..%2foutside",
    "double_encoded": "%252e%252e%252foutside",
    "nul_byte": "abc\x00def",
    "newline": "abc\ndef",
    "space": "abc def",
    "unicode_dots": "\u2025\u2215outside",
    "too_long": "a" * 200,
    "empty": "",
    "hidden_dotdot_inside": "abc..def",
    "leading_dash_option": "-rf",
}


def tree(root) -> list[str]:
    return sorted(os.path.join(path, name) for path, dirs, files in os.walk(root) for name in dirs + files)


def segmentation(request_id: str):
    output = {"masks": [{"url": "data:image/png;base64,iVBORw0KGgo=", "content_type": "image/png"}]}
    ref = RequestReference(
        endpoint_id=ENDPOINT, request_id=request_id, status_url="-", response_url="-", cancel_url="-"
    )
    return build_result(
        ENDPOINTS[ENDPOINT], output, reference=ref, image=None, completed_at=1.0, inference_seconds=None
    ), output


def test_fal_shaped_ids_are_accepted():
    for good in ("5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f", "req-1", "01HF8Z2K3M4N5P6Q7R8S9T0V1W", "a.b_c-d"):
        assert request_id_problem(good) is None, good


@pytest.mark.parametrize("name", list(HOSTILE_IDS))
def test_copy_outputs_refuses_ids_that_leave_output_path(name, tmp_path):
    outside = tmp_path / "sandbox"
    output_path = outside / "out"
    output_path.mkdir(parents=True)
    before = tree(tmp_path)
    document, output = segmentation(HOSTILE_IDS[name])
    with pytest.raises(exc.FalUntrustedUrlError) as raised:
        copy_outputs(document, str(output_path), download=lambda url: b"x", output_json=output)
    assert "Nothing was written" in str(raised.value) and raised.value.retryable is False
    assert tree(tmp_path) == before
    assert not os.path.exists("/tmp/sam3-outside")


@pytest.mark.parametrize("name", ["climb", "absolute", "percent_encoded_climb", "backslash_climb", "nul_byte"])
@pytest.mark.parametrize("mode", ["submit", "asubmit"])
def test_a_submit_answer_with_a_hostile_id_is_refused(name, mode, hostile, connect):
    request_id = HOSTILE_IDS[name]

    def answer(method, path, server):
        base = f"{server.base_url}/fal-ai/sam-3/requests/{request_id}"
        return submit_answer(request_id, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")

    queue = hostile(answer)
    connect(host=queue.host)
    hook = FalHook()
    args = {"image_url": "https://media.example.com/a.png", "prompt": "x"}
    with pytest.raises(exc.FalUntrustedUrlError) as raised:
        if mode == "submit":
            hook.submit(ENDPOINT, args)
        else:

            async def go():
                try:
                    return await hook.asubmit(ENDPOINT, args)
                finally:
                    await hook.aclose()

            asyncio.run(go())
    assert "unusable request id" in str(raised.value)
    assert len(queue.requests) == 1  # the submit; no status call on a path built from the id


def test_single_operator_writes_nothing_outside_output_path(hostile, connect, photo, tmp_path):
    """End to end with a hostile queue that answers every call (submit, status, result): the operator refuses the
    id at submit and never fetches or writes anything."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

    request_id = "../../escaped"

    def answer(method, path, server):
        base = f"{server.base_url}/fal-ai/sam-3/requests/{request_id}"
        if method == "POST":
            return submit_answer(
                request_id, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel"
            )
        if path.endswith("/status") or "/status?" in path:
            return json_answer({"status": "COMPLETED", "logs": None}, 200)
        return json_answer({"masks": [{"url": "data:image/png;base64,iVBORw0KGgo=", "content_type": "image/png"}]})

    queue = hostile(answer)
    connect(host=queue.host)
    output_path = tmp_path / "a" / "b" / "out"
    before = tree(tmp_path)
    operator = SegmentImageOperator(
        task_id="t", image=str(photo), prompt="square", deferrable=False, output_path=str(output_path)
    )
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({})
    assert isinstance(raised.value.__cause__, exc.FalUntrustedUrlError)
    assert [seen.method for seen in queue.requests] == ["POST"]
    # the only change: output_path itself, created (and proved writable) before paying, and left empty
    created = set(tree(tmp_path)) - set(before)
    assert created == {str(output_path), str(output_path.parent), str(output_path.parent.parent)}
    assert list(output_path.iterdir()) == []


@pytest.mark.parametrize("name", ["climb", "absolute", "percent_encoded_climb", "nested"])
def test_sensor_refuses_a_reference_with_a_hostile_id(name, fal_emulator, connect, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    request_id = HOSTILE_IDS[name]
    base = f"https://{fal_emulator.host}/fal-ai/sam-3/requests/{request_id}"
    reference = {
        "endpoint_id": ENDPOINT,
        "request_id": request_id,
        "status_url": f"{base}/status",
        "response_url": base,
        "cancel_url": f"{base}/cancel",
    }
    before = tree(tmp_path)
    sensor = FalRequestSensor(
        task_id="wait", reference=reference, output_path=str(tmp_path / "out"), poke_interval=0.2, timeout=5
    )
    with pytest.raises(AirflowFailException) as raised:
        sensor.execute({})
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError) and cause.field == "reference.request_id"
    assert fal_emulator.counters()["status_calls"] == 0
    assert tree(tmp_path) == before
