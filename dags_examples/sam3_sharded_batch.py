"""One listing of images split over several batch tasks (shards), then one manifest for all of them.

What it shows: ``Sam3BatchOperator.partial(..., shard_count=SHARDS).expand(shard_index=range(SHARDS))``. Each shard
lists the same folder and keeps the images whose source hashes to its index, so the shards split the listing
without passing it around; each is an ordinary Airflow task (any executor: Celery, Kubernetes, local), with the
batch's durability rules (a retry or a clear pays nothing twice). ``Sam3MergeManifestsOperator`` then joins their
manifests, row by row, into one.

Parameters: ``input_folder`` (default ``$SAM3_EXAMPLE_IMAGES``, else ``/tmp/sam3-photos``), ``output_path``
(default ``/tmp/sam3-out``), ``prompt``.

Run it offline against the bundled emulator like the other examples (see ``sam3_mapped_small_batch``), or against
fal.ai with a ``fal_default`` connection::

    airflow dags test sam3_sharded_batch -c '{"input_folder": "/data/photos", "output_path": "/data/sam3"}'

Tested by ``tests/integration/examples/test_sharded_batch_example.py`` and, under ``airflow standalone``, by
``tests/deployment/test_batch_deployment.py``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.merge import Sam3MergeManifestsOperator

SHARDS = 4


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "input_folder": os.environ.get("SAM3_EXAMPLE_IMAGES", "/tmp/sam3-photos"),
        "output_path": "/tmp/sam3-out",
        "prompt": "product",
    },
    tags=["sam3", "example"],
)
def sam3_sharded_batch():
    shards = Sam3BatchOperator.partial(
        task_id="segment",
        images="{{ params.input_folder }}",
        output_path="{{ params.output_path }}",
        arguments={"prompt": "{{ params.prompt }}"},
        shard_count=SHARDS,
        deferrable=True,
        retries=2,
    ).expand(shard_index=list(range(SHARDS)))
    Sam3MergeManifestsOperator(task_id="merge", summaries=shards.output, output_path="{{ params.output_path }}")


sam3_sharded_batch()
