"""The DAG the trust-boundary tests run a batch with: a worker-side batch that reports failed images instead of
retrying them, so each test sees exactly what one hostile queue did."""

from __future__ import annotations

from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator


@dag(dag_id="sam3_trust_batch", schedule=None, params={"images": "", "out": ""})
def trust_batch():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        kind="image",
        arguments={"prompt": "box"},
        deferrable=False,
        on_image_failure="report",
        max_resubmits=0,
    )


batch_dag = trust_batch()
