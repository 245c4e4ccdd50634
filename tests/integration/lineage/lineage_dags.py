"""DAGs the OpenLineage tests run (in a fresh process, with OpenLineage's file transport): a single image, a batch,
a failing batch, a sharded batch merged, and a batch with an outlet asset. Parameters come from the run's conf."""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.merge import Sam3MergeManifestsOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

START = pendulum.datetime(2026, 1, 1, tz="UTC")
MASKS = Asset("file:///sam3-lineage-tests/masks")


@dag(schedule=None, start_date=START, catchup=False)
def lineage_single():
    SegmentImageOperator(
        task_id="segment",
        image="{{ dag_run.conf['image'] }}",
        prompt="square",
        output_path="{{ dag_run.conf['output_path'] }}",
        deferrable=True,
    )


def _batch(on_image_failure: str, skip_invalid: bool = False) -> Sam3BatchOperator:
    return Sam3BatchOperator(
        task_id="segment",
        images="{{ dag_run.conf['images'] }}",
        arguments={"prompt": "square"},
        output_path="{{ dag_run.conf['output_path'] }}",
        on_image_failure=on_image_failure,
        skip_invalid=skip_invalid,
        deferrable=True,
        outlets=[MASKS],
    )


@dag(schedule=None, start_date=START, catchup=False)
def lineage_batch():
    _batch("report")


@dag(schedule=None, start_date=START, catchup=False)
def lineage_failing_batch():
    _batch("fail", skip_invalid=True)  # the broken file is recorded invalid; the batch fails at its end


@dag(schedule=None, start_date=START, catchup=False)
def lineage_shards():
    shards = Sam3BatchOperator.partial(
        task_id="segment",
        images="{{ dag_run.conf['images'] }}",
        arguments={"prompt": "square"},
        output_path="{{ dag_run.conf['output_path'] }}",
        shard_count=2,
        deferrable=True,
    ).expand(shard_index=[0, 1])
    Sam3MergeManifestsOperator(
        task_id="merge", summaries=shards.output, output_path="{{ dag_run.conf['output_path'] }}"
    )


lineage_single()
lineage_batch()
lineage_failing_batch()
lineage_shards()
