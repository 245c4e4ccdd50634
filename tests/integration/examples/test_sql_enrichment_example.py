"""dags_examples/sam3_sql_enrichment.py under dag.test() against the emulator: one SQLite row per mask, true values."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from example_runs import load_example, mapped, single


def test_one_row_per_mask_with_the_documents_values_and_pixel_areas(
    run_example, sample_images, fal_emulator, tmp_path, monkeypatch
):
    import numpy as np
    from PIL import Image

    try:
        import airflow.providers.sqlite  # noqa: F401
    except ImportError:
        pytest.fail("the example's SQLite connection type needs apache-airflow-providers-sqlite in the test extra")
    example = load_example("sam3_sql_enrichment")
    database = tmp_path / "masks.db"
    monkeypatch.setenv("AIRFLOW_CONN_SAM3_MASKS_DB", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    images = sample_images(3)
    out = tmp_path / "out"
    dag_run, results = run_example(
        example.sam3_sql_enrichment(), input_folder=str(images[0].parent), prompt="product", output_path=f"file://{out}"
    )
    assert dag_run.state == "success", results
    assert results[("create_table", -1)][0] == "success"

    documents = mapped(results, "segment")
    assert [d["image"]["source"] for d in documents] == [str(p) for p in images]
    assert fal_emulator.counters()["submissions"]["total"] == len(images)
    total_masks = sum(len(d["masks"]) for d in documents)
    assert total_masks >= len(images)  # every sample photo has its shape found

    with closing(sqlite3.connect(database)) as connection:
        connection.row_factory = sqlite3.Row
        rows = {(r["request_id"], r["mask_index"]): dict(r) for r in connection.execute("SELECT * FROM sam3_masks")}
        key = [
            r["name"]
            for r in sorted(connection.execute("PRAGMA table_info(sam3_masks)"), key=lambda r: r["pk"])
            if r["pk"]
        ]
    assert key == ["request_id", "mask_index"]  # a retried load replaces its rows instead of duplicating them
    assert len(rows) == total_masks
    loaded = single(results, "load_rows")
    assert loaded == {
        "table": "sam3_masks",
        "images": len(images),
        "rows": total_masks,
        "request_ids": sorted(d["request_id"] for d in documents),
    }

    for document in documents:
        for mask in document["masks"]:
            row = rows[(document["request_id"], mask["index"])]
            assert row["image"] == document["image"]["source"]
            assert row["label"] == "product"
            assert row["score"] == mask["score"] and isinstance(row["score"], float)
            assert [row["x_min"], row["y_min"], row["x_max"], row["y_max"]] == mask["pixel_box"]
            assert row["mask_url"] == mask["stored_url"] and row["mask_url"].startswith(f"file://{out}/masks/")
            pixels = np.asarray(Image.open(mask["stored_url"].removeprefix("file://")).convert("L")) > 0
            assert row["area"] == int(pixels.sum()) > 0 and isinstance(row["area"], int)
            ys, xs = np.nonzero(pixels)  # the fal box and the mask agree
            assert [row["x_min"], row["y_min"], row["x_max"], row["y_max"]] == pytest.approx(
                [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], abs=1
            )

    # A retried load (same documents) replaces its rows: still one row per mask.
    dag = example.sam3_sql_enrichment()
    params = {"prompt": "product", "sql_conn_id": "sam3_masks_db"}
    assert dag.get_task("load_rows").python_callable(documents, params=params)["rows"] == total_masks
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT COUNT(*) FROM sam3_masks").fetchone()[0] == total_masks
