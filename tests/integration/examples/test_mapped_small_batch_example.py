"""dags_examples/sam3_mapped_small_batch.py under dag.test(): one request per image, a true summary."""

from __future__ import annotations

import pytest
from example_runs import load_example, mapped, single

IMAGE_ENDPOINT = "fal-ai/sam-3/image"


def test_one_task_and_one_fal_request_per_image_then_a_summary_of_their_documents(
    run_example, sample_images, fal_emulator, tmp_path
):
    example = load_example("sam3_mapped_small_batch")
    images = sample_images(4)
    dag_run, results = run_example(
        example.sam3_mapped_small_batch(), input_folder=str(images[0].parent), prompt="product"
    )
    assert dag_run.state == "success", results

    # One mapped task instance per image, in the folder's sorted order, each with its own document.
    assert single(results, "list_images") == [str(p) for p in images]
    documents = mapped(results, "segment")
    assert [d["image"]["source"] for d in documents] == [str(p) for p in images]
    assert all(d["kind"] == "sam3.segmentation" and d["endpoint_id"] == IMAGE_ENDPOINT for d in documents)

    # One fal request per image: the emulator saw exactly these, and no other.
    counters = fal_emulator.counters()
    assert counters["submissions"] == {"total": len(images), "by_endpoint": {IMAGE_ENDPOINT: len(images)}}
    request_ids = [d["request_id"] for d in documents]
    assert len(set(request_ids)) == len(images)
    assert {r["request_id"] for r in fal_emulator.requests()} == set(request_ids)

    # Each sample photo holds one coloured shape on a plain background: the segmenter finds it, scored, boxed.
    for document in documents:
        assert 1 <= len(document["masks"]) <= 4
        first = document["masks"][0]
        assert 0 < first["score"] <= 1
        x_min, y_min, x_max, y_max = first["pixel_box"]
        assert 0 <= x_min < x_max <= document["image"]["width"] and 0 <= y_min < y_max <= document["image"]["height"]

    # The summary is computed from those documents, not made up.
    summary = single(results, "summarize")
    assert summary["images"] == len(images)
    assert summary["masks"] == sum(len(d["masks"]) for d in documents)
    assert summary["images_without_masks"] == []
    assert summary["cost_usd"] == pytest.approx(0.005 * len(images))
    assert [line["request_id"] for line in summary["per_image"]] == request_ids
    for line, document in zip(summary["per_image"], documents):
        assert line["image"] == document["image"]["source"]
        assert line["masks"] == len(document["masks"])
        assert line["best_score"] == max(m["score"] for m in document["masks"])
        assert line["pixel_boxes"] == [m["pixel_box"] for m in document["masks"]]


def test_refuses_a_batch_larger_than_max_images_before_sending_anything(run_example, sample_images, fal_emulator):
    example = load_example("sam3_mapped_small_batch")
    images = sample_images(3)
    dag_run, results = run_example(example.sam3_mapped_small_batch(), images=[str(p) for p in images], max_images=2)
    assert results[("list_images", -1)][0] == "failed"
    assert dag_run.state == "failed"
    assert fal_emulator.counters()["submissions"]["total"] == 0
