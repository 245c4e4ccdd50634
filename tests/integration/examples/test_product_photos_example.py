"""The scheduled product-photo example under dag.test() against the emulator: files a person can look at."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


ACCOUNTING = frozenset({"cache", "submissions", "cost_usd"})
"""Manifest columns that differ by design between a run that paid and a run the result cache answered."""


def run_example(dag, inputs, out, prompt="product"):
    return dag.test(
        run_conf={"input_folder": str(inputs), "output_path": str(out), "prompt": prompt, "max_cost_usd": 1.0}
    )


def render_summary(run) -> dict:
    return next(ti for ti in run.get_task_instances() if ti.task_id == "render").xcom_pull(task_ids="render")


def comparable_manifest(manifest: Path) -> list[dict]:
    """A run's manifest rows without their accounting columns, its run folder written as ``<run>``."""
    text = manifest.read_text().replace(str(manifest.parent), "<run>")
    return [{k: v for k, v in json.loads(line).items() if k not in ACCOUNTING} for line in text.splitlines()]


def billed(fal_emulator) -> tuple[int, int]:
    counters = fal_emulator.counters()
    return counters["submissions"]["total"], counters["billed"]


def test_product_photo_example_writes_masks_cutouts_overlays_and_metadata(airflow_db, fal_emulator, tmp_path):
    sys.path.insert(0, str(REPO / "dags_examples"))
    try:
        import _demo
        import sam3_product_photos
    finally:
        sys.path.pop(0)
    images = _demo.make_sample_images(tmp_path / "inputs", 3)
    out = tmp_path / "out"
    dag = sam3_product_photos.sam3_product_photos()
    run = run_example(dag, tmp_path / "inputs", out)
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {"folder_images": "success", "segment": "success", "render": "success"}, states
    assert fal_emulator.counters()["submissions"]["total"] == len(images)  # one batch task, one request per image

    from PIL import Image

    overlays = sorted((out / "overlays").iterdir())
    assert [p.stem for p in overlays] == [sam3_product_photos.picture_name(str(p)) for p in images]
    for overlay, image in zip(overlays, images):
        assert Image.open(overlay).size == Image.open(image).size
        assert Image.open(overlay).tobytes() != Image.open(image).convert("RGB").tobytes()  # the mask is drawn
    cutouts = [Image.open(path) for path in sorted((out / "cutouts").iterdir())]
    assert cutouts and all(cutout.mode == "RGBA" for cutout in cutouts)
    assert any(cutout.getextrema()[3] == (0, 255) for cutout in cutouts)  # the mask cuts the object out
    summary = next(ti for ti in run.get_task_instances() if ti.task_id == "render").xcom_pull(task_ids="render")
    sheet = Image.open(summary["contact_sheet"].removeprefix("file://"))
    assert sheet.size == (4 * (320 + 8) + 8, 1 * (320 + 32 + 8) + 8)  # one row of four cells for three images
    first_manifest = Path(summary["manifest"].removeprefix("file://"))
    run_folder = first_manifest.parent
    assert run_folder.name == "segment" and run_folder.parent.parent.name == "sam3_product_photos"
    rows = [json.loads(line) for line in (run_folder / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) >= len(images)
    assert all(row["area"] > 0 and row["x_max"] > row["x_min"] and row["label"] == "product" for row in rows)
    assert all(Path(row["mask"].removeprefix("file://")).is_file() for row in rows)
    csv_lines = (run_folder / "metadata.csv").read_text().splitlines()
    assert csv_lines[0].startswith("image,label,request_id") and len(csv_lines) == len(rows) + 1
    manifest = [json.loads(line) for line in first_manifest.read_text().splitlines()]
    assert [row["status"] for row in manifest] == ["succeeded"] * len(images)

    # The next scheduled run over the unchanged folder: answered by the result cache, nothing sent, $0 billed.
    assert billed(fal_emulator) == (len(images), len(images))
    again = render_summary(run_example(dag, tmp_path / "inputs", out))
    assert billed(fal_emulator) == (len(images), len(images))
    assert again["cost_usd"] == 0 and again["cache_hits"] == len(images) and again["succeeded"] == len(images)
    second_manifest = Path(again["manifest"].removeprefix("file://"))
    assert second_manifest != first_manifest
    assert comparable_manifest(second_manifest) == comparable_manifest(first_manifest)
    hits = [json.loads(line)["cache"] for line in second_manifest.read_text().splitlines()]
    assert all(hit["hit"] and hit["request_id"] for hit in hits)
    # One changed photo and one new photo are the only ones sent.
    from PIL import ImageDraw

    changed = Image.open(images[1]).convert("RGB")
    ImageDraw.Draw(changed).rectangle([0, 0, 3, 3], fill=(255, 0, 0))
    changed.save(images[1])
    extra = _demo.make_sample_images(tmp_path / "more", 4)[-1]
    extra.rename(tmp_path / "inputs" / "zz_new.jpg")
    third = render_summary(run_example(dag, tmp_path / "inputs", out))
    assert billed(fal_emulator) == (len(images) + 2, len(images) + 2)
    assert third["cache_hits"] == len(images) - 1 and third["succeeded"] == len(images) + 1
    assert (
        out / "overlays" / f"{sam3_product_photos.picture_name(str(tmp_path / 'inputs' / 'zz_new.jpg'))}.png"
    ).is_file()
    # A changed prompt misses everywhere.
    fourth = render_summary(run_example(dag, tmp_path / "inputs", out, prompt="bottle"))
    assert fourth["cache_hits"] == 0 and billed(fal_emulator) == (2 * len(images) + 3, 2 * len(images) + 3)
    # Each run wrote its own manifest and metadata: the first run's are still there, whole.
    manifests = sorted((out / "masks").rglob("manifest.jsonl"))
    assert len(manifests) == 4 and first_manifest in manifests
    assert len(first_manifest.read_text().splitlines()) == len(images)
    assert len((run_folder / "metadata.jsonl").read_text().splitlines()) == len(rows)


def test_images_with_the_same_stem_keep_their_own_pictures_and_rows(airflow_db, fal_emulator, tmp_path):
    """``shoe.png`` and ``shoe.jpg`` are two images: two overlays, their own cutouts, rows pointing at each."""
    sys.path.insert(0, str(REPO / "dags_examples"))
    try:
        import _demo
        import sam3_product_photos
    finally:
        sys.path.pop(0)
    first, second = _demo.make_sample_images(tmp_path / "made", 2)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    from PIL import Image

    Image.open(first).save(inputs / "shoe.png")
    Image.open(second).convert("RGB").save(inputs / "shoe.jpg")
    out = tmp_path / "out"
    run = run_example(sam3_product_photos.sam3_product_photos(), inputs, out)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["render"] == "success"
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(overlays) == 2 and all(name.startswith("shoe-") for name in overlays)
    summary = next(ti for ti in run.get_task_instances() if ti.task_id == "render").xcom_pull(task_ids="render")
    rows = [
        json.loads(line)
        for line in Path(summary["metadata"].removeprefix("file://")).with_suffix(".jsonl").read_text().splitlines()
    ]
    by_image: dict[str, set[str]] = {}
    for row in rows:
        by_image.setdefault(row["image"], set()).add(row["cutout"])
    assert set(by_image) == {str(inputs / "shoe.png"), str(inputs / "shoe.jpg")}
    assert not by_image[str(inputs / "shoe.png")] & by_image[str(inputs / "shoe.jpg")]  # no cutout shared
    assert all(Path(c.removeprefix("file://")).is_file() for cutouts in by_image.values() for c in cutouts)
    assert len({cutout for cutouts in by_image.values() for cutout in cutouts}) == len(rows)


def test_the_demo_photos_get_their_own_prompts_and_draw_the_readme_picture(airflow_db, fal_emulator, tmp_path):
    """The demo's real photos with their prompts.json: each is sent with its own prompt and box, labelled with its
    prompt, and the run's contact sheet is the picture the README shows (so the README cannot drift from the demo)."""
    sys.path.insert(0, str(REPO / "dags_examples"))
    try:
        import _demo
        import sam3_product_photos
    finally:
        sys.path.pop(0)
    from PIL import Image

    from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS

    photos = _demo.copy_demo_photos(tmp_path / "inputs")
    assert len(photos) == len(DEMO_PHOTOS)
    out = tmp_path / "out"
    run = run_example(sam3_product_photos.sam3_product_photos(), tmp_path / "inputs", out)
    assert {ti.task_id: ti.state for ti in run.get_task_instances()}["render"] == "success"
    assert fal_emulator.counters()["submissions"]["total"] == len(DEMO_PHOTOS)
    summary = next(ti for ti in run.get_task_instances() if ti.task_id == "render").xcom_pull(task_ids="render")
    rows = [
        json.loads(line)
        for line in Path(summary["metadata"].removeprefix("file://")).with_suffix(".jsonl").read_text().splitlines()
    ]
    prompts = {photo.name: photo.prompt for photo in DEMO_PHOTOS}
    assert {Path(row["image"]).stem: row["label"] for row in rows} == prompts  # each labelled by its own prompt
    for photo in DEMO_PHOTOS:  # the box was sent: the first mask lies within it (a text prompt alone strays)
        row = next(r for r in rows if Path(r["image"]).stem == photo.name and r["mask_index"] == 0)
        x0, y0, x1, y1 = photo.box
        slack = 4  # the emulator segments a copy of at most 256 px a side: an edge is good to one of its pixels
        assert x0 - slack <= row["x_min"] and row["x_max"] <= x1 + slack, (photo.name, row)
        assert y0 - slack <= row["y_min"] and row["y_max"] <= y1 + slack, (photo.name, row)

    import numpy as np

    made = np.asarray(Image.open(summary["contact_sheet"].removeprefix("file://")).convert("RGB"), dtype=np.int16)
    committed = np.asarray(Image.open(REPO / "docs" / "demo-contact-sheet.png").convert("RGB"), dtype=np.int16)
    assert made.shape == committed.shape
    assert np.abs(made - committed).mean() < 2.0  # rerun `make demo`, copy out/demo/contact_sheet.png to docs/


def test_the_readme_credits_every_demo_photo():
    from airflow_provider_sam3.samples.demo_photos import DEMO_PHOTOS

    readme = (REPO / "README.md").read_text()
    for photo in DEMO_PHOTOS:
        assert f"| {photo.file} | {photo.prompt} | {photo.credit} |" in readme, photo.name
