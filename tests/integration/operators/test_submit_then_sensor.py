"""Submit in one task (wait_for_completion=False), wait in another with FalRequestSensor: poke, reschedule, defer."""

from __future__ import annotations

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator
from airflow_provider_sam3.sensors.fal import FalRequestSensor


def make_dag(mode: str):
    @dag(dag_id=f"sam3_submit_then_sensor_{mode}", schedule=None, params={"image": ""})
    def submit_then_sensor():
        submit = SegmentImageOperator(
            task_id="submit",
            image="{{ params.image }}",
            prompt="square",
            include_scores=True,
            wait_for_completion=False,
        )
        FalRequestSensor(
            task_id="wait",
            reference=submit.output,
            poke_interval=0.3,
            timeout=60,
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
        )

    return submit_then_sensor()


DAGS = {mode: make_dag(mode) for mode in ("poke", "reschedule", "deferrable")}


@pytest.mark.parametrize("mode", list(DAGS))
def test_sensor_waits_for_the_submitted_request_and_returns_its_document(run_dag, photo, fal_emulator, mode):
    fal_emulator.configure(service_time_s=1.0)
    results = run_dag(DAGS[mode], image=str(photo))
    assert results["submit"][0] == "success" and results["wait"][0] == "success", results
    reference = results["submit"][1]
    assert set(reference) >= {"endpoint_id", "request_id", "status_url", "response_url", "cancel_url"}
    assert reference["image"]["width"] == 96 and reference["image"]["height"] == 64
    document = results["wait"][1]
    assert document["request_id"] == reference["request_id"]
    assert document["image"] == reference["image"]  # so pixel boxes and RLE sizes do not depend on fal's files
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


@dag(dag_id="sam3_sensor_polling_too_fast", schedule=None, params={"image": ""})
def polling_too_fast():
    submit = SegmentImageOperator(
        task_id="submit", image="{{ params.image }}", prompt="square", wait_for_completion=False
    )
    FalRequestSensor(task_id="wait", reference=submit.output, poke_interval=0.05, timeout=5, deferrable=True)


POLLING_TOO_FAST_DAG = polling_too_fast()


def test_a_sensor_polling_faster_than_the_floor_is_refused_before_polling(run_dag, photo, fal_emulator, capfd):
    results = run_dag(POLLING_TOO_FAST_DAG, image=str(photo))
    assert results["wait"][0] == "failed"
    out, err = capfd.readouterr()
    assert "poke_interval: 0.05 s would poll fal too fast (allowed: at least 0.2 s)" in out + err
    assert fal_emulator.counters()["status_calls"] == 0


def make_timeout_dag(mode: str, cancel_on_stop: bool, soft_fail: bool = False):
    dag_id = f"sam3_sensor_timeout_{mode}_{'cancels' if cancel_on_stop else 'leaves'}{'_soft' if soft_fail else ''}"

    @dag(dag_id=dag_id, schedule=None, params={"image": ""})
    def sensor_timeout():
        submit = SegmentImageOperator(
            task_id="submit", image="{{ params.image }}", prompt="square", wait_for_completion=False
        )
        FalRequestSensor(
            task_id="wait",
            reference=submit.output,
            poke_interval=0.3,
            timeout=1.5,
            retries=2,
            deferrable=mode == "deferrable",
            cancel_on_stop=cancel_on_stop,
            soft_fail=soft_fail,
        )

    return sensor_timeout()


TIMEOUT_CASES = [
    ("poke", False, False),
    ("poke", True, False),
    ("deferrable", False, False),
    ("deferrable", True, False),
    ("deferrable", False, True),
    ("poke", True, True),
]
TIMEOUT_DAGS = {case: make_timeout_dag(*case) for case in TIMEOUT_CASES}


@pytest.mark.parametrize("mode, cancel_on_stop, soft_fail", TIMEOUT_CASES)
def test_a_sensor_timeout_leaves_the_request_to_its_owner_unless_told_to_cancel(
    run_dag, photo, fal_emulator, capfd, mode, cancel_on_stop, soft_fail
):
    fal_emulator.configure(service_time_s=60.0)
    results = run_dag(TIMEOUT_DAGS[(mode, cancel_on_stop, soft_fail)], image=str(photo))
    # A sensor timeout is final in every mode: no retry, skipped under soft_fail, as Airflow's own sensors do.
    assert results["wait"][0] == ("skipped" if soft_fail else "failed"), results
    out, err = capfd.readouterr()
    assert "Sensor has timed out" in out + err or "deadline passed" in out + err
    request = fal_emulator.requests()[0]
    assert fal_emulator.counters()["submissions"]["total"] == 1
    assert request["cancelled"] is cancel_on_stop
    assert fal_emulator.counters()["cancels"]["total"] == int(cancel_on_stop)
    if cancel_on_stop:
        assert request["request_id"] in out + err and "CANCELLATION_REQUESTED" in out + err
    else:
        assert request["request_id"] in out + err and "left running for the task that submitted it" in out + err


@dag(dag_id="sam3_sensor_connection_cadence", schedule=None, params={"image": ""})
def connection_cadence():
    submit = SegmentImageOperator(
        task_id="submit",
        image="{{ params.image }}",
        prompt="square",
        wait_for_completion=False,
        fal_conn_id="fal_fast",
    )
    FalRequestSensor(task_id="wait", reference=submit.output, fal_conn_id="fal_fast", timeout=120, deferrable=True)


CONNECTION_CADENCE_DAG = connection_cadence()


def test_a_deferrable_sensor_without_poke_interval_polls_at_the_connections_interval(
    run_dag, photo, fal_emulator, monkeypatch
):
    """Airflow's 60 s ``poke_interval`` default would poll twice in all (at the start and a minute later): the
    sensor follows the connection's ``poll_interval`` instead, counted at fal as status calls."""
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_FAL_FAST",
        json.dumps(
            {
                "conn_type": "fal",
                "password": fal_emulator.api_key,
                "host": fal_emulator.host,
                "extra": {"poll_interval": 0.2, "max_poll_interval": 0.4},
            }
        ),
    )
    fal_emulator.configure(service_time_s=3.0)
    results = run_dag(CONNECTION_CADENCE_DAG, image=str(photo))
    assert results["wait"][0] == "success", results
    assert fal_emulator.counters()["status_calls"] >= 4  # 60 s apart, the 3 s request would have had 2
