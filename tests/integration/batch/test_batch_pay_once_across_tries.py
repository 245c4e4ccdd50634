"""A batch try that Airflow fails after the batch finished (the scheduler's resume race, apache/airflow#67287, seen
failing mapped batches under load) leaves its summary: the next try of the run returns it without paying again.
Under dag.test() the failure is made by the task itself, right after the batch returned; retries are Airflow's."""

from __future__ import annotations

import json

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
