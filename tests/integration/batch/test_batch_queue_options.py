"""The batch sends fal's queue options on every request, as the single operators do; bad ones, and fields fal
would ignore, are caught before anything is listed or sent."""

from __future__ import annotations

from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PARAMS = {"images": "", "out": ""}


@dag(dag_id="sam3_batch_queue_options", schedule=None, params=PARAMS)
def batch_options():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box", "max_masks": 3},
        priority="low",
        start_timeout=600,
        hint="gpu-a",
        media_expires_in="1d",
        store_io=False,
        poll_interval=0.2,
    )


@dag(dag_id="sam3_batch_low_without_deadline", schedule=None, params=PARAMS)
def low_without_deadline():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        priority="low",
        retries=2,
    )


OPTIONS_DAG, LOW_DAG = batch_options(), low_without_deadline()


def test_every_request_of_a_batch_carries_the_queue_options(photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(4)
    state, results = run_batch_dag(OPTIONS_DAG, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "success", results
    records = fal_emulator.requests()
    assert len(records) == 4
    for record in records:
        assert record["headers"] == {
            "x-fal-queue-priority": "low",
            "x-fal-request-timeout": "600.0",
            "x-fal-runner-hint": "gpu-a",
            "x-fal-object-lifecycle-preference": '{"expiration_duration_seconds": 86400}',
            "x-fal-store-io": "0",
        }
    assert "max_masks=3 has no effect without return_multiple_masks=True" in capfd.readouterr().out


def test_low_priority_without_a_start_timeout_is_refused_before_listing(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd
):
    paths = photos(2)
    state, results = run_batch_dag(LOW_DAG, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    assert "priority: 'low' without start_timeout" in log and "not retried" in log
