"""ETL enrichment: segment images with SAM 3, then load one row per mask into a SQL table (common-sql).

What it shows: a mapped ``SegmentImageOperator`` (one deferrable fal request per image, mask PNGs copied to
``output_path``), ``SQLExecuteQueryOperator`` creating the table, and a task that turns each result document into
rows with ``SegmentationResult.to_rows(with_area=True)`` and loads them with the connection's hook
(``DbApiHook.insert_rows``). Each row: image, request_id, mask_index, label (the prompt), score, pixel box
``x_min, y_min, x_max, y_max`` (maxima exclusive), area in pixels (counted from the copied mask PNG) and mask_url
(the copy, not fal's expiring URL). The key is ``(request_id, mask_index)`` and rows are written with REPLACE, so a
retried load rewrites its rows instead of duplicating them; a new run adds the rows of its new requests.

The database is any common-sql connection, SQLite by default: connection id ``sam3_masks_db`` (param
``sql_conn_id``), e.g. defined by an environment variable (needs ``apache-airflow-providers-sqlite``)::

    export AIRFLOW_CONN_SAM3_MASKS_DB='{"conn_type": "sqlite", "host": "/tmp/sam3-masks.db"}'

Point ``sql_conn_id`` at a Postgres or MySQL connection instead and the same DAG loads there (the DDL is portable).

Parameters: ``input_folder`` (every image in it; default ``$SAM3_EXAMPLE_IMAGES``, else ``/tmp/sam3-photos``) or
``images`` (explicit paths or https URLs, which win), ``prompt``, ``output_path`` (mask copies), ``sql_conn_id``.

Run it against fal.ai (a ``fal`` connection ``fal_default``, or ``FAL_KEY``; $0.005 per image)::

    airflow dags test sam3_sql_enrichment -c '{"input_folder": "/path/to/photos", "prompt": "product"}'

or offline against the bundled emulator, on the sample photos ``python dags_examples/_demo.py`` writes::

    rm -f /tmp/fal.env; python -m airflow_provider_sam3.testing.emulator --port 8443 --env-file /tmp/fal.env &
    until [ -s /tmp/fal.env ]; do sleep 0.2; done; set -a; . /tmp/fal.env; set +a
    export SAM3_EXAMPLE_IMAGES=$PWD/out/demo/inputs
    export AIRFLOW_CONN_SAM3_MASKS_DB='{"conn_type": "sqlite", "host": "/tmp/sam3-masks.db"}'
    airflow dags test sam3_sql_enrichment

Tested by ``tests/integration/examples/test_sql_enrichment_example.py``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import dag, task

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

TABLE = "sam3_masks"
COLUMNS = (
    "request_id",
    "mask_index",
    "image",
    "label",
    "score",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "area",
    "mask_url",
)
CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id  VARCHAR(64)  NOT NULL,
    mask_index  INTEGER      NOT NULL,
    image       TEXT         NOT NULL,
    label       TEXT,
    score       DOUBLE PRECISION,
    x_min       DOUBLE PRECISION,
    y_min       DOUBLE PRECISION,
    x_max       DOUBLE PRECISION,
    y_max       DOUBLE PRECISION,
    area        BIGINT,
    mask_url    TEXT,
    PRIMARY KEY (request_id, mask_index)
)
"""


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "input_folder": os.environ.get("SAM3_EXAMPLE_IMAGES", "/tmp/sam3-photos"),
        "images": [],
        "prompt": "product",
        "output_path": "file:///tmp/sam3-sql-enrichment",
        "sql_conn_id": "sam3_masks_db",
    },
    tags=["sam3", "example"],
)
def sam3_sql_enrichment():
    @task
    def list_images(params: dict | None = None) -> list[str]:
        """The explicit ``images`` list if given, else every image file in ``input_folder``, sorted (resolved as the
        batch operator resolves its ``images``: folders and globs, local or on object storage)."""
        from airflow_provider_sam3.operators.image_listing import list_images

        field, given = ("images", params["images"]) if params["images"] else ("input_folder", params["input_folder"])
        return list_images(given, field_name=field)

    masks = SegmentImageOperator.partial(
        task_id="segment",
        prompt="{{ params.prompt }}",
        apply_mask=False,
        return_multiple_masks=True,
        max_masks=4,
        include_scores=True,
        include_boxes=True,
        output_path="{{ params.output_path }}/masks",  # durable copies: the table points at them, not at fal
        deferrable=True,
        poll_interval=0.5,
        retries=2,
    ).expand(image=list_images())

    create_table = SQLExecuteQueryOperator(
        task_id="create_table",
        conn_id="{{ params.sql_conn_id }}",
        sql=CREATE_TABLE,
    )

    @task
    def load_rows(documents: list[dict], params: dict | None = None) -> dict:
        """One row per mask of every document, inserted (or replaced) in one go; returns what was loaded."""
        from airflow.sdk import BaseHook, ObjectStoragePath

        from airflow_provider_sam3.models.results import SegmentationResult

        rows = []
        for position in range(len(documents)):  # indexing, not iterating: no probe past the last XCom
            result = SegmentationResult.from_xcom(documents[position])
            rows += result.to_rows(
                label=params["prompt"], with_area=True, read=lambda url: ObjectStoragePath(url).read_bytes()
            )
        hook = BaseHook.get_connection(params["sql_conn_id"]).get_hook()
        hook.insert_rows(
            TABLE,
            [tuple(row[c] for c in COLUMNS) for row in rows],
            target_fields=list(COLUMNS),
            replace=True,
            replace_index=["request_id", "mask_index"],
            executemany=True,
        )
        print(f"loaded {len(rows)} mask rows from {len(documents)} images into {TABLE}")
        return {
            "table": TABLE,
            "images": len(documents),
            "rows": len(rows),
            "request_ids": sorted({row["request_id"] for row in rows}),
        }

    loaded = load_rows(masks.output)
    create_table >> loaded


sam3_sql_enrichment()
