"""The emulator's stand-in segmenter on the demo's real photos: the committed IoU table is what it does today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _mask_quality():
    spec = importlib.util.spec_from_file_location("mask_quality", REPO / "bench" / "mask_quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(table: str) -> dict[str, tuple[float, float]]:
    rows = {}
    for line in table.splitlines()[2:]:
        photo, _prompt, text, box = (cell.strip() for cell in line.strip("|").split("|"))
        rows[photo] = (float(text), float(box))
    return rows


def test_the_committed_mask_quality_table_matches_the_segmenter():
    """A change to the segmenter shows in docs/mask-quality.md: rerun ``python bench/mask_quality.py --write``."""
    quality = _mask_quality()
    measured = quality.measure()
    committed = _rows(quality.committed_table())
    assert sorted(committed) == sorted(row["photo"] for row in measured)
    for row in measured:
        text, box = committed[row["photo"]]
        assert abs(row["text"] - text) <= 0.03 and abs(row["box"] - box) <= 0.03, (row, committed[row["photo"]])


def test_a_box_around_each_demo_photos_object_gives_a_plausible_mask():
    for row in _mask_quality().measure():
        assert row["box"] >= 0.65, row


def test_the_reference_masks_are_hand_drawn_polygons_inside_their_photos():
    import json

    from PIL import Image

    from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS

    references = json.loads((REPO / "bench" / "reference_masks.json").read_text())["photos"]
    assert sorted(references) == sorted(photo.name for photo in DEMO_PHOTOS)
    for photo in DEMO_PHOTOS:
        width, height = Image.open(photo.path()).size
        polygon = references[photo.name]["polygon"]
        assert len(polygon) >= 4 and all(0 <= x <= width and 0 <= y <= height for x, y in polygon), photo.name
        x0, y0, x1, y1 = photo.box
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, photo.name
