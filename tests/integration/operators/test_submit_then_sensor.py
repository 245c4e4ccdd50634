"""Submit in one task (wait_for_completion=False), wait in another with FalRequestSensor: poke, reschedule, deferrable."""

from __future__ import annotations

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator
from airflow_provider_sam3.sensors.fal import FalRequestSensor


def make_dag(mode: str):
    @dag(dag_id=f"sam3_submit_then_sensor_{mode}", schedule=None, params={"image": ""})
    def submit_then_sensor():
        submit = SegmentImageOperator(task_id="submit", image="{{ params.image }}", prompt="square",
                                      include_scores=True, wait_for_completion=False)
        FalRequestSensor(task_id="wait", reference=submit.output, poke_interval=0.3, timeout=60,
                         mode="reschedule" if mode == "reschedule" else "poke", deferrable=mode == "deferrable")

    return submit_then_sensor()


DAGS = {mode: make_dag(mode) for mode in ("poke", "reschedule", "deferrable")}


@pytest.mark.parametrize("mode", list(DAGS))
def test_sensor_waits_for_the_submitted_request_and_returns_its_document(run_dag, photo, fal_emulator, mode):
    fal_emulator.configure(service_time_s=1.0)
    results = run_dag(DAGS[mode], image=str(photo))
    assert results["submit"][0] == "success" and results["wait"][0] == "success", results
    reference = results["submit"][1]
    assert set(reference) >= {"endpoint_id", "request_id", "status_url", "response_url", "cancel_url"}
    document = results["wait"][1]
    assert document["request_id"] == reference["request_id"]
    assert document["cost_usd"] == 0.005 and document["masks"][0]["score"] is not None
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 1 and counters["result_calls"] == 1
    link = f"https://{fal_emulator.host}/_emulator/requests/{reference['request_id']}"
    assert results["__links__"] == {"submit": link, "wait": link}


def test_sensor_refuses_a_reference_that_is_not_one(run_dag, photo, fal_emulator, capfd):
    results = run_dag(BAD_REFERENCE_DAG, image=str(photo))
    assert results["wait"][0] == "failed"
    out, err = capfd.readouterr()
    assert "reference: must be a request reference" in out + err


@dag(dag_id="sam3_sensor_bad_reference", schedule=None, params={"image": ""})
def bad_reference():
    FalRequestSensor(task_id="wait", reference={"request_id": "abc"}, poke_interval=0.3, timeout=5)


BAD_REFERENCE_DAG = bad_reference()
