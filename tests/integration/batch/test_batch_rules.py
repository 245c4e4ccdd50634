"""Batch rules under dag.test() against the emulator: the cost ceiling, unusable images, per-image fields from an
XCom, and retryable failures resubmitted a bounded number of times while the rest are reported."""

from __future__ import annotations

import json

from airflow.sdk import dag, task
from manifests import manifest_rows, output_file

from airflow_provider_sam3.batch.engine import BatchEngine
from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PARAMS = {"images": "", "out": "", "max_cost": 1000.0, "skip_invalid": False}


@dag(dag_id="sam3_batch_cost_ceiling", schedule=None, params=PARAMS)
def batch_cost_ceiling():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        max_cost_usd="{{ params.max_cost }}",
        retries=2,
    )


@dag(dag_id="sam3_batch_invalid", schedule=None, params=PARAMS)
def batch_invalid():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        skip_invalid=True,
        on_image_failure="report",
    )


@dag(dag_id="sam3_batch_per_image_fields", schedule=None, params=PARAMS)
def batch_per_image_fields():
    @task
    def plan(folder: str) -> list[dict]:
        import os

        names = sorted(os.listdir(folder))
        return [
            {"image": os.path.join(folder, name), "prompt": f"thing {i}", "max_masks": 1 + i % 3}
            for i, name in enumerate(names)
        ]

    Sam3BatchOperator(
        task_id="segment",
        images=plan("{{ params.images }}"),
        output_path="{{ params.out }}",
        kind="image-rle",
        deferrable=True,
    )


@dag(dag_id="sam3_batch_failures", schedule=None, params=PARAMS)
def batch_failures():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        deferrable=True,
        max_resubmits=2,
        on_image_failure="report",
        poll_interval=0.2,
    )


@dag(dag_id="sam3_batch_failures_fail", schedule=None, params=PARAMS)
def batch_failures_fail():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        deferrable=False,
        on_image_failure="fail",
        poll_interval=0.2,
    )


cost_dag = batch_cost_ceiling()
invalid_dag = batch_invalid()
fields_dag = batch_per_image_fields()
failures_dag = batch_failures()
failures_fail_dag = batch_failures_fail()


def test_cost_above_ceiling_submits_nothing(photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(30)
    state, results = run_batch_dag(cost_dag, images=str(paths[0].parent), out=str(tmp_path / "out"), max_cost=0.1)
    assert state == "failed" and results["segment"][0] == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    assert "max_cost_usd" in log and "$0.15" in log and "nothing was submitted" in log
    assert "$0.15" in log and "30 requests" in log


def test_cost_within_ceiling_runs(photos, tmp_path, run_batch_dag, fal_emulator):
    paths = photos(4)
    state, results = run_batch_dag(cost_dag, images=str(paths[0].parent), out=str(tmp_path / "out"), max_cost=0.02)
    assert state == "success", results
    assert results["segment"][1]["succeeded"] == 4 and results["segment"][1]["cost_usd"] == 0.02


def test_invalid_images_are_reported_not_sent(photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(5)
    (paths[0].parent / "notes.png").write_text("this is not an image")
    (paths[0].parent / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    state, results = run_batch_dag(invalid_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    summary = results["segment"][1]
    assert (summary["images"], summary["succeeded"], summary["invalid"]) == (7, 5, 2)
    assert fal_emulator.counters()["submissions"]["total"] == 5
    rows = {row["source"].rsplit("/", 1)[1]: row for row in manifest_rows(out)}
    assert rows["notes.png"]["status"] == "invalid" and "looks like text" in rows["notes.png"]["error"]
    assert rows["empty.jpg"]["status"] == "invalid" and "empty" in rows["empty.jpg"]["error"]
    assert rows["notes.png"]["request_id"] is None
    log = capfd.readouterr().out
    said = "2 of 7 images cannot be sent and are recorded as invalid (skip_invalid=True): images["
    assert said in log and "notes.png" in log and "empty.jpg" in log  # the log names each skipped file


def test_invalid_images_refuse_the_batch_by_default(photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(3)
    (paths[0].parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    state, _ = run_batch_dag(cost_dag, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
    log = capfd.readouterr().out
    assert "1 of 4 images cannot be sent, so nothing was submitted" in log and "broken.png" in log
    assert "skip_invalid=True" in log


def test_per_image_fields_from_an_xcom(photos, tmp_path, run_batch_dag, fal_emulator):
    paths = photos(6)
    out = tmp_path / "out"
    state, results = run_batch_dag(fields_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    rows = manifest_rows(out)
    assert [row["arguments"]["prompt"] for row in rows] == [f"thing {i}" for i in range(6)]
    sent = {r["request_id"]: r for r in fal_emulator.requests()}
    for row in rows:
        body = sent[row["request_id"]]["arguments"]
        assert body["prompt"] == row["arguments"]["prompt"] and body["max_masks"] == row["arguments"]["max_masks"]
        assert row["masks"] and all(mask["rle"] for mask in row["masks"])  # RLE rows carry their masks


def test_retryable_failures_resubmitted_and_counted(photos, tmp_path, run_batch_dag, fal_emulator):
    """Vanished requests are resubmitted (bounded), app errors are reported, and nothing is paid silently."""
    paths = photos(40)
    fal_emulator.configure(concurrency=4, service_time_s=0.05)
    fal_emulator.add_fault("vanish", target="status", every=9)
    fal_emulator.add_fault("app_500", target="submit", first=2)
    fal_emulator.add_fault("nginx_503", target="status", every=7)
    out = tmp_path / "out"
    state, results = run_batch_dag(failures_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    summary = results["segment"][1]
    rows = manifest_rows(out)
    assert len(rows) == 40 and [row["source"] for row in rows] == [str(p) for p in paths]
    failed = [row for row in rows if row["status"] != "succeeded"]
    assert len(failed) == summary["failed"] >= 1
    assert all(row["error_class"] in ("FalAppError", "FalRequestNotFoundError") for row in failed)
    # Each crashed request is reported as the app's error. One whose status vanished first (which of the two faults
    # reaches it first depends on timing) is gone from fal and was resubmitted like any vanished request.
    crashed = {r["request_id"] for r in fal_emulator.requests() if r["fault"] == "app_500"}
    kept = [row for row in rows if row["request_id"] in crashed]
    assert len(kept) == len(crashed) >= 1
    assert all(row["status"] != "succeeded" and row["error_class"] == "FalAppError" for row in kept)
    assert summary["resubmissions"] >= 1
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == summary["submissions"] == 40 + summary["resubmissions"]
    for row in rows:
        if row["status"] == "succeeded":
            assert all(output_file(row, mask).exists() for mask in row["masks"])


def test_failure_policy_fail_keeps_what_succeeded(photos, tmp_path, run_batch_dag, fal_emulator, capfd):
    paths = photos(8)
    fal_emulator.configure(concurrency=4, service_time_s=0.05)
    fal_emulator.add_fault("app_500", target="submit", first=1)
    out = tmp_path / "out"
    state, _ = run_batch_dag(failures_fail_dag, images=str(paths[0].parent), out=str(out))
    assert state == "failed"
    rows = manifest_rows(out)
    assert [row["status"] for row in rows].count("succeeded") == 7
    log = capfd.readouterr().out
    assert "1 of 8 images have no result" in log
    # An app crash is final: a retry would not change it, so the task fails without retrying (and pays nothing).
    assert "only final failures remain" in log and "not retried" in log
    assert fal_emulator.counters()["submissions"]["total"] == 8


UNPATCHED_SUBMIT_DUE = BatchEngine._submit_due


async def submit_then_change_the_folder_and_fail(self, groups, on_submitted):
    """Try 1: after submitting, a file leaves the folder and a new one arrives, then the try fails (retryably).
    Patched into the engine by the test alone (the package has no test seam)."""
    await UNPATCHED_SUBMIT_DUE(self, groups, on_submitted)
    if self.options.try_number == 1:
        import os
        import shutil

        state = self.state
        folder = os.path.dirname(state.entries["0"].source)
        shutil.copy(state.entries["1"].source, os.path.join(folder, "zz_arrived_later.png"))
        os.remove(state.entries["0"].source)
        raise RuntimeError("try 1 stops here (injected by the test)")


@dag(dag_id="sam3_batch_list_once", schedule=None, params=PARAMS)
def batch_list_once():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        on_image_failure="fail",
        poll_interval=0.2,
        retries=1,
        retry_delay=0,
    )


list_once_dag = batch_list_once()


def test_a_retry_keeps_the_image_list_of_the_first_try(
    photos, tmp_path, run_batch_dag, fal_emulator, capfd, monkeypatch
):
    monkeypatch.setattr(BatchEngine, "_submit_due", submit_then_change_the_folder_and_fail)
    paths = photos(4)
    out = tmp_path / "out"
    state, results = run_batch_dag(list_once_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    log = capfd.readouterr().out
    assert "try 1 stops here" in log and "with the image list of its first try (4 rows" in log
    rows = manifest_rows(out)
    # The try-1 list: the removed file stays (its request was already at fal), the new file is not in this run.
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    assert all(row["status"] == "succeeded" for row in rows)
    assert (paths[0].parent / "zz_arrived_later.png").exists() and not paths[0].exists()
    assert fal_emulator.counters()["submissions"]["total"] == 4 == results["segment"][1]["submissions"]


@dag(dag_id="sam3_batch_repeats", schedule=None, params=PARAMS)
def batch_repeats():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        poll_interval=0.2,
    )


repeats_dag = batch_repeats()


def test_a_repeated_image_keeps_its_row_and_shares_the_request(photos, tmp_path, run_batch_dag, fal_emulator):
    paths = [str(p) for p in photos(3)]
    images = [paths[0], paths[1], paths[0], paths[2], paths[1]]
    out = tmp_path / "out"
    state, results = run_batch_dag(repeats_dag, images=json.dumps(images), out=str(out))
    assert state == "success", results
    rows = manifest_rows(out)
    assert [row["source"] for row in rows] == images and [row["index"] for row in rows] == list(range(5))
    assert [row.get("repeat_of") for row in rows] == [None, None, 0, None, 1]
    assert rows[2]["request_id"] == rows[0]["request_id"] and rows[4]["request_id"] == rows[1]["request_id"]
    assert rows[2]["masks"] == rows[0]["masks"] and rows[2]["status"] == "succeeded"
    assert fal_emulator.counters()["submissions"]["total"] == 3
    summary = results["segment"][1]
    assert (summary["images"], summary["repeats"], summary["succeeded"], summary["submissions"]) == (5, 2, 5, 3)
