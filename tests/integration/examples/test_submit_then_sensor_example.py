"""dags_examples/sam3_submit_then_sensor.py under dag.test(): one request, submitted, waited for, read."""

from __future__ import annotations

import pytest
from example_runs import load_example, single

SNEAKER_BOX = (60, 110, 261, 201)  # _demo's sneaker: an ellipse drawn in [60, 110, 260, 200], maxima inclusive


def test_submit_returns_a_reference_the_deferrable_sensor_waits_for_and_the_reader_reads(
    run_example, sample_images, fal_emulator, tmp_path
):
    import numpy as np
    from PIL import Image

    example = load_example("sam3_submit_then_sensor")
    image = sample_images(1)[0]
    out = tmp_path / "out"
    fal_emulator.configure(service_time_s=1.5)  # still running when submit returns: the sensor really waits
    dag_run, results = run_example(
        example.sam3_submit_then_sensor(), image=str(image), prompt="shoe", output_path=f"file://{out}"
    )
    assert dag_run.state == "success", results

    # submit: a request reference, not a result.
    reference = single(results, "submit")
    assert reference["endpoint_id"] == "fal-ai/sam-3/image"
    assert set(reference) >= {"request_id", "status_url", "response_url", "cancel_url"}
    assert "masks" not in reference

    # Exactly one request reached fal; submit did not wait for it, the sensor did.
    counters = fal_emulator.counters()
    assert counters["submissions"] == {"total": 1, "by_endpoint": {"fal-ai/sam-3/image": 1}}
    assert counters["result_calls"] == 1
    (request,) = fal_emulator.requests()
    assert request["request_id"] == reference["request_id"] and request["state"] == "COMPLETED"
    ends = {ti.task_id: ti.end_date.timestamp() for ti in dag_run.get_task_instances()}
    assert ends["submit"] < request["completed_at"] <= ends["wait"]

    # wait (the sensor): the result document of that request, masks copied under output_path/<request_id>/.
    document = single(results, "wait")
    assert document["kind"] == "sam3.segmentation"
    assert document["request_id"] == reference["request_id"]
    assert document["cost_usd"] == 0.005
    assert document["output_location"].rstrip("/").endswith(reference["request_id"])
    masks = document["masks"]
    assert 1 <= len(masks) <= 4 and all(0 < m["score"] <= 1 for m in masks)
    for mask in masks:
        assert mask["stored_url"] == f"file://{out}/{reference['request_id']}/mask_{mask['index']:03d}.png"
    assert masks[0]["pixel_box"] == pytest.approx(SNEAKER_BOX, abs=3)  # found the drawn shape

    # read_result: one line per mask, areas counted from the copied PNGs, boxes from the document.
    read = single(results, "read_result")
    assert read["request_id"] == reference["request_id"] and read["image"] == str(image)
    assert read["cost_usd"] == 0.005 and read["wait_seconds"] >= 1.0
    assert [m["mask_index"] for m in read["masks"]] == [m["index"] for m in masks]
    for line, mask in zip(read["masks"], masks):
        pixels = np.asarray(Image.open(mask["stored_url"].removeprefix("file://")).convert("L")) > 0
        assert line["area"] == int(pixels.sum()) > 0
        assert [line["x_min"], line["y_min"], line["x_max"], line["y_max"]] == mask["pixel_box"]
        assert line["score"] == mask["score"] and line["mask_url"] == mask["stored_url"]
        assert line["area"] <= (line["x_max"] - line["x_min"]) * (line["y_max"] - line["y_min"])
