"""The batch DAG the deployment and cluster suites run, and what every run of it must leave: each image once in
the manifest, with its outputs, and the emulator paid once per image (plus the counted resubmissions)."""

from __future__ import annotations

from pathlib import Path

from manifests import manifest_rows

BATCH_DAG = '''
import os
import signal

import pendulum
from airflow.sdk import dag

from airflow_provider_sam3.batch.engine import BatchEngine
from airflow_provider_sam3.operators.batch import Sam3BatchOperator


UNPATCHED_SUBMIT_DUE = getattr(BatchEngine._submit_due, "unpatched", BatchEngine._submit_due)


async def submit_and_die(self, groups, on_submitted):
    """On try 1, SIGKILLs its own worker once KILL_AFTER requests were submitted and saved (0: never), whatever
    other submit calls are still in flight. Patched in by this DAG file alone: the package has no test seam."""
    def watched(entries):
        on_submitted(entries)
        done = sum(1 for e in self.state.entries.values() if e.state == "submitted")
        if KILL_AFTER and done >= KILL_AFTER and self.options.try_number == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    return await UNPATCHED_SUBMIT_DUE(self, groups, watched)


submit_and_die.unpatched = UNPATCHED_SUBMIT_DUE  # a second parse in one process patches the original again
BatchEngine._submit_due = submit_and_die


class DiesWhileSubmitting(Sam3BatchOperator):
    def execute(self, context):
        self._try_number = context["ti"].try_number
        return super().execute(context)


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    DiesWhileSubmitting(
        task_id="segment",
        images="{{ dag_run.conf['images'] }}",
        output_path="{{ dag_run.conf['out'] }}",
        arguments={"prompt": "box"},
        deferrable=DEFERRABLE,
        submit_concurrency=SUBMIT_CONCURRENCY,
        max_resubmits=MAX_RESUBMITS,
        on_image_failure="report",
        poll_interval=0.5,
        retries=2,  # one for the kill, one spare for Airflow 3.3.2's resume race (see test_sam3_deployment)
        retry_delay=1,
    )


the_dag()
'''


def dag_source(kill_after: int, deferrable: bool = True, submit_concurrency: int = 8, max_resubmits: int = 2) -> str:
    """The kill comes from a slot right after its submission was saved, before that slot's next call. Other slots
    may have calls in flight then, which fal may have created (the documented window: at most
    ``submit_concurrency`` calls); the kill tests use two slots, so the only other call in flight is the one
    they choose."""
    return (
        BATCH_DAG.replace("KILL_AFTER", str(kill_after))
        .replace("DEFERRABLE", str(deferrable))
        .replace("SUBMIT_CONCURRENCY", str(submit_concurrency))
        .replace("MAX_RESUBMITS", str(max_resubmits))
    )


def assert_every_image_once(out: Path, paths: list[Path], summary: dict, fal_emulator) -> list[dict]:
    """One succeeded row per image with its masks on disk, and fal paid exactly once per image: every request
    fal created is one the batch counted, fal billed one request per image, and each billed request is the one
    whose result is in the manifest (none paid and thrown away)."""
    rows = manifest_rows(out)
    assert [row["source"] for row in rows] == [str(p) for p in paths]
    assert all(row["status"] == "succeeded" for row in rows), [r for r in rows if r["status"] != "succeeded"][:3]
    for row in rows:
        assert row["masks"], row
        for mask in row["masks"]:
            assert Path(mask["location"].removeprefix("file://")).is_file(), mask
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == summary["submissions"], (counters["submissions"], summary)
    assert summary["submissions"] + summary["unseen"] == len(paths) + summary["resubmissions"], summary
    billed = {r["request_id"] for r in fal_emulator.requests() if r["billed"]}
    assert counters["billed"] == len(paths) == len(billed), (counters["billed"], len(paths))
    assert billed == {row["request_id"] for row in rows}
    return rows


def assert_only_the_finished_summary_is_kept(dep, dag_id: str, run_id: str) -> None:
    """A batch that succeeded keeps one task-state-store row per task: its summary, which a later try of the run
    returns (Airflow can fail a try after it finished) and a clear of the run replaces. Every image's entry and
    journal row is gone."""
    rows = dep.query(
        "SELECT task_id, map_index, key FROM task_state_store WHERE dag_id=? AND run_id=?", (dag_id, run_id)
    )
    assert {key for _, _, key in rows} <= {"fal_batch", "fal_request"}, rows
    assert len(rows) == len({(task, index) for task, index, _ in rows}), rows
