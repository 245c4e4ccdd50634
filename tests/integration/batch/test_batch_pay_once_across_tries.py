"""A batch try that Airflow fails after the batch finished (the scheduler's resume race, apache/airflow#67287, seen
failing mapped batches under load) leaves its summary: the next try of the run returns it without paying again.
Under dag.test() the failure is made by the task itself, right after the batch returned; retries are Airflow's."""

from __future__ import annotations

import json
from pathlib import Path

from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

PARAMS = {"images": "", "out": ""}


class FailedByAirflowAfterFinishing(Sam3BatchOperator):
    """Try 1 finishes its batch, then fails as Airflow fails it when the scheduler's race hits after the end."""

    def execute(self, context):
        summary = super().execute(context)
        if context["ti"].try_number == 1:
            raise RuntimeError("the scheduler failed this try after it finished (simulated)")
        return summary


@dag(dag_id="sam3_batch_failed_after_finishing", schedule=None, params=PARAMS)
def failed_after_finishing():
    FailedByAirflowAfterFinishing(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        deferrable=False,
        retries=1,
        retry_delay=0,
    )


the_dag = failed_after_finishing()


def test_the_try_after_a_finished_try_returns_its_summary_without_paying(photos, tmp_path, run_batch_dag, fal_emulator):
    paths = photos(12)
    out = tmp_path / "out"
    state, results = run_batch_dag(the_dag, images=str(paths[0].parent), out=str(out))
    assert state == "success", results
    summary = results["segment"][1]
    assert (summary["images"], summary["succeeded"], summary["submissions"]) == (12, 12, 12)
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 12 == counters["billed"]
    manifest = [json.loads(line) for line in open(summary["manifest"].removeprefix("file://"))]
    assert sorted(row["request_id"] for row in manifest) == sorted(r["request_id"] for r in fal_emulator.requests())


class RowsLeftBehind(Sam3BatchOperator):
    """Try 1 finishes its batch but, as when Airflow stops accepting its writes halfway through the cleanup (seen under
    load: "Task instance not found" on the 19th delete), leaves journal rows behind; then Airflow fails it."""

    def execute(self, context):
        summary = super().execute(context)
        self.left_behind = Path(summary["manifest"].removeprefix("file://")).parent
        if context["ti"].try_number == 1:
            context["task_state_store"].set("fal_batch.j.18", {"e": []})
            context["task_state_store"].set("fal_batch.j.19", {"e": []})
            parts = self.left_behind / "_manifest"
            parts.mkdir(parents=True, exist_ok=True)
            (parts / "part-00000.jsonl").write_text("")
            raise RuntimeError("the scheduler failed this try while it cleaned up (simulated)")
        return summary


@dag(dag_id="sam3_batch_rows_left_behind", schedule=None, params=PARAMS)
def rows_left_behind():
    RowsLeftBehind(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        deferrable=False,
        retries=1,
        retry_delay=0,
    )


left_behind_dag = rows_left_behind()


def test_the_next_try_finishes_the_cleanup_a_failed_try_left(photos, tmp_path, run_batch_dag, fal_emulator):
    from airflow.utils.session import create_session
    from sqlalchemy import text

    paths = photos(4)
    state, results = run_batch_dag(left_behind_dag, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "success", results
    assert fal_emulator.counters()["billed"] == 4 and results["segment"][1]["submissions"] == 4
    with create_session() as session:
        keys = session.execute(
            text("SELECT key FROM task_state_store WHERE dag_id = 'sam3_batch_rows_left_behind'")
        ).scalars()
        assert sorted(keys) == ["fal_batch"]  # the header with the summary; the rows left behind are gone
    assert list((tmp_path / "out").rglob("_manifest")) == []  # and the manifest's part files
