"""Batch parameters that would disable a check or fail after paying are refused first, naming the field."""

from __future__ import annotations

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PARAMS = {"images": "", "out": ""}


def make_dag(case: str, **options):
    @dag(dag_id=f"sam3_batch_refusal_{case}", schedule=None, params=PARAMS)
    def refusal():
        Sam3BatchOperator(
            task_id="segment",
            images="{{ params.images }}",
            output_path=options.pop("output_path", "{{ params.out }}"),
            arguments=options.pop("arguments_override", {"prompt": "box"}),
            retries=2,
            **options,
        )

    return refusal()


CASES = {
    # max_cost_usd is templated, so it arrives as text ("{{ params.max_cost }}"); a float NaN or infinity in a
    # template field is refused by Airflow itself (rendered fields are stored as strict JSON).
    "cost_nan_text": ({"max_cost_usd": "nan"}, "max_cost_usd"),
    "cost_inf_text": ({"max_cost_usd": "inf"}, "max_cost_usd"),
    "cost_true": ({"max_cost_usd": True}, "max_cost_usd"),
    "timeout_negative": ({"timeout": -5}, "timeout"),
    "output_under_a_file": ({}, "output_path"),
    "output_in_sys": ({"output_path": "/sys/kernel/sam3-batch"}, "output_path"),
}
DAGS = {case: make_dag(case, **dict(options)) for case, (options, _) in CASES.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_before_anything_is_sent(case, photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(3)
    out = tmp_path / "out"
    if case == "output_under_a_file":
        (tmp_path / "a-file").write_text("not a folder")
        out = tmp_path / "a-file" / "sam3"
    state, results = run_batch_dag(DAGS[case], images=str(paths[0].parent), out=str(out))
    assert state == "failed" and results["segment"][0] == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    field = CASES[case][1]
    assert f"{field}: " in log, log[-3000:]
    assert "not retried" in log  # a retry would be refused the same way


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), True])
def test_an_unusable_timeout_fails_the_dag_file(timeout):
    """``timeout`` is not templated: the DAG file itself fails to import, naming the parameter."""
    from airflow_provider_sam3.exceptions import InputValidationError

    with pytest.raises(InputValidationError, match="^timeout: "):
        Sam3BatchOperator(task_id="segment", images=["/tmp/a.png"], output_path="/tmp/out", timeout=timeout)


TLS_DAG = make_dag("tls")


def test_a_queue_certificate_the_worker_cannot_verify_stops_the_batch_with_the_fix(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd, monkeypatch
):
    """Every submit would meet the same certificate: the batch stops at the first, says why and what to set, and
    is not retried (a retry meets the same certificate); nothing reaches fal."""
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # a real CA bundle without the emulator's certificate
    paths = photos(20)
    state, results = run_batch_dag(TLS_DAG, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "failed" and results["segment"][0] == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    assert "TLS certificate could not be verified" in log and "SSL_CERT_FILE" in log, log[-3000:]
    assert "not retried" in log


TYPO_DAGS = {
    skip: make_dag(f"typo_skip_{skip}", arguments_override={"prompt": "box", "max_mask": 2}, skip_invalid=skip)
    for skip in (False, True)
}


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_typo_in_the_shared_arguments_names_arguments_whatever_skip_invalid_says(
    skip_invalid, photos, tmp_path, run_batch_dag, fal_emulator, capfd
):
    """Every image is refused for the same shared field: the batch fails naming ``arguments``; it neither advises
    ``skip_invalid=True`` nor, with it set, succeeds with every image recorded invalid."""
    paths = photos(3)
    state, results = run_batch_dag(TYPO_DAGS[skip_invalid], images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "failed" and results["segment"][0] == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    assert "arguments.max_mask: every image was refused" in log and "did you mean 'max_masks'" in log, log[-3000:]
    assert "or set skip_invalid=True" not in log
