"""The scheduled product-photo example under dag.test() against the emulator: files a person can look at."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_product_photo_example_writes_masks_cutouts_overlays_and_metadata(airflow_db, fal_emulator, tmp_path):
    sys.path.insert(0, str(REPO / "dags_examples"))
    try:
        import _demo
        import sam3_product_photos
    finally:
        sys.path.pop(0)
    images = _demo.make_sample_images(tmp_path / "inputs", 3)
    out = tmp_path / "out"
    run = sam3_product_photos.sam3_product_photos().test(
        run_conf={"input_folder": str(tmp_path / "inputs"), "output_path": f"file://{out}", "prompt": "product"}
    )
    states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
    assert set(states.values()) == {"success"}, states
    assert sum(1 for task, _ in states if task == "segment") == len(images)

    from PIL import Image

    overlays = sorted((out / "overlays").iterdir())
    assert [p.stem for p in overlays] == [p.stem for p in images]
    for overlay, image in zip(overlays, images):
        assert Image.open(overlay).size == Image.open(image).size
        assert Image.open(overlay).tobytes() != Image.open(image).convert("RGB").tobytes()  # the mask is drawn
    cutout = Image.open(next((out / "cutouts").iterdir()))
    assert cutout.mode == "RGBA" and cutout.getextrema()[3] == (0, 255)
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) >= len(images)
    assert all(row["area"] > 0 and row["x_max"] > row["x_min"] and row["label"] == "product" for row in rows)
    assert fal_emulator.counters()["submissions"]["total"] == len(images)
