"""BatchResults: a batch's rows, each image's result document and one table for all, read as untrusted files."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.exceptions import InvalidImageError
from airflow_provider_sam3.models.results import ResultDocumentError, SegmentationResult, result_from_xcom
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.storage.batch_results import MAX_ROW_CHARS, BatchResults


@dag(dag_id="sam3_batch_results_reader", schedule=None, params={"images": "", "out": ""})
def batch_with_every_outcome():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        arguments={"prompt": "box"},
        skip_invalid=True,
        on_image_failure="report",
    )


READER_DAG = batch_with_every_outcome()


def test_a_batch_is_read_row_by_row_with_each_images_document_and_one_table(
    photos, tmp_path, run_batch_dag, fal_emulator
):
    paths = photos(5)
    (paths[0].parent / "notes.png").write_text("this is not an image")
    fal_emulator.add_fault("app_500", target="submit", first=1)  # the first image's request crashes at fal
    state, results = run_batch_dag(READER_DAG, images=str(paths[0].parent), out=str(tmp_path / "out"))
    assert state == "success", results
    summary = results["segment"][1]
    batch = BatchResults.from_xcom(summary)

    rows = list(batch)
    assert [row.index for row in rows] == list(range(6))
    statuses = [row.status for row in rows]
    assert (statuses.count("succeeded"), statuses.count("failed"), statuses.count("invalid")) == (4, 1, 1)
    assert (summary["succeeded"], summary["failed"], summary["invalid"]) == (4, 1, 1)
    failures = {row.source: row for row in batch.failed()}
    assert failures.pop(str(paths[0].parent / "notes.png")).status == "invalid"
    [(crashed, row)] = failures.items()  # the request fal's app crashed on (submits run concurrently: any photo)
    assert crashed in {str(p) for p in paths} and row.error_class == "FalAppError"

    masks = 0
    for row, document in batch.documents():
        assert isinstance(document, SegmentationResult)
        assert document.request_id == row.request_id and document.scores == row.scores
        arrays = document.mask_arrays()
        assert arrays and all(a.shape == (document.image.height, document.image.width) for a in arrays)
        masks += len(document.masks)
    table = list(batch.to_rows("box", with_area=True))
    assert len(table) == masks >= 4
    assert all(r["label"] == "box" and r["area"] > 0 and r["score"] is not None for r in table)
    assert {r["index"] for r in table} == {row.index for row in rows if row.succeeded}

    failed = next(row for row in rows if row.status == "failed")
    with pytest.raises(ResultDocumentError, match=r"is 'failed', so it has no result document"):
        failed.document()
    for value in (summary, rows[1].model_dump()):  # a batch's values, given to a single-image reader
        with pytest.raises(ResultDocumentError, match="BatchResults.from_xcom"):
            SegmentationResult.from_xcom(value)
        with pytest.raises(ResultDocumentError, match="BatchResults.from_xcom"):
            result_from_xcom(value)


def write_manifest(folder, *lines: str):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.jsonl").write_text("".join(line + "\n" for line in lines))
    return BatchResults(str(folder / "manifest.jsonl"))


def test_a_row_pointing_outside_the_batchs_folder_is_not_read(tmp_path):
    """A manifest is a file on shared storage: a row naming another folder (here one with a result.json in it)
    is refused before that file is opened."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "result.json").write_text("{}")
    row = {"index": 0, "source": "a.jpg", "status": "succeeded", "output_location": str(elsewhere)}
    batch = write_manifest(tmp_path / "run" / "segment", json.dumps(row))
    [read] = list(batch.succeeded())
    assert read.output_location == str(elsewhere)  # the row itself reads fine: its fields are plain values
    with pytest.raises(InvalidImageError, match="outside"):
        next(batch.documents())


@pytest.mark.parametrize(
    "line, field",
    [
        ("[" * 100_000 + "]" * 100_000, "manifest line 1"),  # nesting that would exhaust the recursion limit
        ("x" * (MAX_ROW_CHARS + 10), "manifest line 1"),  # a line longer than any row
        ('{"index": "first", "source": "a.jpg", "status": "succeeded"}', "manifest line 1.index"),
        ("not json", "manifest line 1"),
    ],
)
def test_a_damaged_manifest_is_refused_naming_the_line(tmp_path, line, field):
    with pytest.raises(ResultDocumentError) as raised:
        list(write_manifest(tmp_path / "segment", line))
    assert raised.value.field == field


def planted(tmp_path, document: dict):
    """A batch folder whose one row points at ``<folder>/req`` holding ``document`` as its result.json."""
    folder = tmp_path / "run" / "segment"
    (folder / "req").mkdir(parents=True)
    (folder / "req" / "result.json").write_text(json.dumps(document))
    row = {"index": 0, "source": "a.jpg", "status": "succeeded", "output_location": str(folder / "req")}
    return write_manifest(folder, json.dumps(row)), folder


def test_a_result_file_linking_out_of_the_batch_or_naming_another_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.json").write_text("{}")
    batch, folder = planted(tmp_path, {})
    (folder / "req" / "result.json").unlink()
    (folder / "req" / "result.json").symlink_to(elsewhere / "secret.json")
    with pytest.raises(InvalidImageError, match="outside"):
        next(batch.documents())

    document = {
        "schema_version": 1,
        "kind": "sam3.segmentation",
        "endpoint_id": "fal-ai/sam-3/image",
        "request_id": "r",
        "timings": {"completed_at": 1.0},
        "output_location": str(elsewhere),  # where its readers would then read masks from
        "masks": [],
    }
    batch, _ = planted(tmp_path / "second", document)
    with pytest.raises(InvalidImageError, match="output_location"):
        next(batch.documents())


def test_a_row_read_by_hand_needs_the_folder_its_outputs_must_lie_in(tmp_path):
    from airflow_provider_sam3.storage.batch_results import BatchRow

    row = BatchRow(index=0, source="a.jpg", status="succeeded", output_location=str(tmp_path))
    with pytest.raises(ResultDocumentError) as raised:
        row.document()
    assert raised.value.field == "root"


def test_a_fifo_in_place_of_the_manifest_is_refused_not_waited_on(tmp_path):
    import os

    folder = tmp_path / "segment"
    folder.mkdir()
    os.mkfifo(folder / "manifest.jsonl")
    with pytest.raises(InvalidImageError, match="FIFO"):
        list(BatchResults(str(folder / "manifest.jsonl")))


def test_bytes_that_are_not_utf8_are_a_damaged_line_not_a_crash(tmp_path):
    folder = tmp_path / "segment"
    folder.mkdir()
    (folder / "manifest.jsonl").write_bytes(b'{"index": 0, "source": "\xff\xfe", "status": "invalid"}\n\xff\n')
    batch = BatchResults(str(folder / "manifest.jsonl"))
    with pytest.raises(ResultDocumentError) as raised:
        list(batch)
    assert raised.value.field == "manifest line 2"
