"""Data-aware scheduling downstream of a SAM 3 batch: each time ``sam3_product_photos`` segments new photos, its
batch task's outlet asset (``sam3_product_masks``) gets an event whose ``extra`` names the batch's manifest, with its
counts and cost; this DAG runs on that event and loads one row per mask into a SQLite table.

The manifest is read through ``BatchResults`` (``airflow_provider_sam3.storage.batch_results``): rows are streamed,
and every path a row names must lie inside the batch's own folder, whatever the event says.
Parameter: ``database`` (the SQLite file; its folder must exist).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Asset, dag, task

PRODUCT_MASKS = Asset("sam3_product_masks")
"""The outlet of ``sam3_product_photos``'s batch task (an asset is known by its name across DAG files)."""
COLUMNS = ("manifest", "image", "request_id", "mask_index", "label", "score", "x_min", "y_min", "x_max", "y_max")


@dag(
    schedule=[PRODUCT_MASKS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"database": "/tmp/sam3-output/masks.sqlite"},
    tags=["sam3", "example"],
)
def sam3_masks_to_table():
    @task
    def load(database: str, triggering_asset_events=None) -> dict:
        """One row per mask of every batch whose event triggered this run."""
        import sqlite3

        from airflow_provider_sam3.storage.batch_results import BatchResults

        events = [event for found in (triggering_asset_events or {}).values() for event in found]
        manifests = [event.extra["manifest"] for event in events if isinstance(event.extra.get("manifest"), str)]
        loaded = 0
        with sqlite3.connect(database) as db:
            db.execute(f"CREATE TABLE IF NOT EXISTS sam3_masks ({', '.join(COLUMNS)})")
            for manifest in manifests:
                rows = [
                    (manifest, *(row[column] for column in COLUMNS[1:]))
                    for row in BatchResults(manifest).to_rows("product")
                ]
                db.executemany(f"INSERT INTO sam3_masks VALUES ({', '.join('?' * len(COLUMNS))})", rows)
                loaded += len(rows)
        return {"manifests": manifests, "rows": loaded, "costs_usd": [event.extra.get("cost_usd") for event in events]}

    load("{{ params.database }}")


sam3_masks_to_table()
