"""Reading documents back from XCom, and the helpers users want: scores, pixel boxes, mask arrays, SQL rows."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from results_helpers import HEIGHT, MEDIA, WIDTH, Downloads, build

from airflow_provider_sam3.media.boxes import mask_box
from airflow_provider_sam3.media.render import mask_to_png
from airflow_provider_sam3.media.rle import rle_decode, rle_encode
from airflow_provider_sam3.models.results import (
    EmbeddingResult,
    FilesResult,
    ResultDocumentError,
    SegmentationResult,
    result_from_xcom,
)

ROW_COLUMNS = [
    "image",
    "request_id",
    "mask_index",
    "label",
    "score",
    "x_min",
    "y_min",
    "x_max",
    "y_max",
    "area",
    "mask_url",
]


def _documents(image_output, rle_output):
    image = {"source": "/data/in.png", "width": WIDTH, "height": HEIGHT}
    return [
        build("fal-ai/sam-3/image", image_output, image=image),
        build("fal-ai/sam-3/image-rle", rle_output, image=image),
        build("fal-ai/sam-3/image/embed", {"embedding_b64": base64.b64encode(b"abcd").decode()}),
        build(
            "fal-ai/sam-3/3d-objects",
            {"gaussian_splat": {"url": f"{MEDIA}/s.ply"}, "metadata": [{"object_index": 0, "scale": [[1.0]]}]},
        ),
    ]


def test_json_round_trip_is_equal_for_every_kind(image_output, rle_output):
    for document in _documents(image_output, rle_output):
        wire = json.loads(json.dumps(document.to_xcom()))
        assert type(document).from_xcom(wire) == document
        assert result_from_xcom(wire) == document
        assert result_from_xcom(json.dumps(wire)) == document  # JSON text, as Jinja renders it
        assert result_from_xcom(json.dumps(wire).encode()) == document
        assert result_from_xcom(document) == document
        assert document.to_xcom() == document.model_dump(mode="json")


def test_result_from_xcom_picks_the_class_by_kind(image_output, rle_output):
    classes = [type(result_from_xcom(d.to_xcom())) for d in _documents(image_output, rle_output)]
    assert classes == [SegmentationResult, SegmentationResult, EmbeddingResult, FilesResult]


def test_unknown_schema_version_is_refused_with_advice(image_output):
    wire = build("fal-ai/sam-3/image", image_output).to_xcom()
    wire["schema_version"] = 2
    for reader in (SegmentationResult.from_xcom, result_from_xcom):
        with pytest.raises(ResultDocumentError, match="schema_version: is 2.*reads version 1.*upgrade"):
            reader(wire)
    del wire["schema_version"]
    with pytest.raises(ResultDocumentError, match="not a SAM 3 result document"):
        result_from_xcom(wire)


def test_wrong_kind_and_garbage_are_refused(image_output):
    files = build("fal-ai/sam-3/video", {"video": {"url": f"{MEDIA}/v.mp4"}}).to_xcom()
    with pytest.raises(ResultDocumentError, match="SegmentationResult reads 'sam3.segmentation'"):
        SegmentationResult.from_xcom(files)
    with pytest.raises(ResultDocumentError, match="not a SAM 3 result document"):
        result_from_xcom({"schema_version": 1, "kind": "other"})
    with pytest.raises(ResultDocumentError, match="not JSON"):
        result_from_xcom("{nope")
    with pytest.raises(ResultDocumentError, match="got list"):
        result_from_xcom([1, 2])
    broken = build("fal-ai/sam-3/image", image_output).to_xcom()
    broken["masks"][0]["index"] = "first"
    with pytest.raises(ResultDocumentError, match=r"masks\[0\]\.index"):
        SegmentationResult.from_xcom(broken)


def test_unknown_fields_within_version_1_are_ignored(image_output):
    wire = build("fal-ai/sam-3/image", image_output).to_xcom()
    wire["added_later"] = {"x": 1}
    wire["masks"][0]["also_new"] = True
    assert SegmentationResult.from_xcom(wire).masks[0].index == 0


def test_document_for_32_masks_stays_small():
    output = {
        "image": {"url": f"{MEDIA}/preview.png", "content_type": "image/png", "width": 1024, "height": 1024},
        "masks": [
            {
                "url": f"https://v3b.fal.media/files/b/0a1b2c3d/mask_{i:02d}_Z9RV14K95DvU.png",
                "content_type": "image/png",
                "width": 1024,
                "height": 1024,
            }
            for i in range(32)
        ],
        "metadata": [
            {"index": i, "score": 0.123456789, "box": [0.123456789, 0.23456789, 0.3456789, 0.456789]} for i in range(32)
        ],
        "scores": [0.987654321] * 32,
        "boxes": [[0.123456789, 0.23456789, 0.3456789, 0.456789]] * 32,
    }
    stored = {
        m["url"]: f"s3://aws_default@my-bucket/sam3/outputs/req-1/mask_{i:03d}.png"
        for i, m in enumerate(output["masks"])
    }
    document = build(
        "fal-ai/sam-3/image",
        output,
        image={"source": "s3://aws_default@my-bucket/in/photo_0001.jpg", "width": 1024, "height": 1024},
        stored=stored,
    )
    size = len(json.dumps(document.to_xcom()))
    assert len(document.masks) == 32
    assert size < 16 * 1024, size


def test_scores_and_pixel_boxes(image_output):
    document = build("fal-ai/sam-3/image", image_output, image={"width": WIDTH, "height": HEIGHT})
    assert document.scores == [0.9, 0.7]
    assert document.pixel_boxes == [[15.0, 7.5, 25.0, 22.5], None]


def test_to_rows_for_mask_images(image_output):
    document = build(
        "fal-ai/sam-3/image", image_output, image={"source": "/data/in.png", "width": WIDTH, "height": HEIGHT}
    )
    rows = document.to_rows(label="wheel")
    assert [list(r) for r in rows] == [ROW_COLUMNS, ROW_COLUMNS]
    assert rows[0] == {
        "image": "/data/in.png",
        "request_id": "req-1",
        "mask_index": 0,
        "label": "wheel",
        "score": 0.9,
        "x_min": 15.0,
        "y_min": 7.5,
        "x_max": 25.0,
        "y_max": 22.5,
        "area": None,
        "mask_url": f"{MEDIA}/mask_0.png",
    }
    assert rows[1]["x_min"] is None and rows[1]["area"] is None and rows[1]["label"] == "wheel"
    assert document.to_rows()[0]["label"] is None


def test_to_rows_with_area_reads_the_masks(image_output, downloads, mask_arrays):
    document = build("fal-ai/sam-3/image", image_output, image={"width": WIDTH, "height": HEIGHT})
    rows = document.to_rows(with_area=True, fetch=downloads)
    assert [r["area"] for r in rows] == [int(m.sum()) for m in mask_arrays]
    # fal sent no box for mask 1: the mask's tight box fills in
    assert (rows[1]["x_min"], rows[1]["y_min"], rows[1]["x_max"], rows[1]["y_max"]) == mask_box(mask_arrays[1])
    # fal's box is kept where it sent one
    assert rows[0]["x_min"] == 15.0


def test_mask_arrays_from_rle_equal_the_decoded_masks(rle_output, mask_arrays):
    document = build("fal-ai/sam-3/image-rle", rle_output, image={"width": WIDTH, "height": HEIGHT})
    arrays = document.mask_arrays()
    assert len(arrays) == 2
    for got, want, rle in zip(arrays, mask_arrays, rle_output["rle"]):
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, rle_decode(rle, WIDTH, HEIGHT))
    wire = SegmentationResult.from_xcom(json.loads(json.dumps(document.to_xcom())))
    np.testing.assert_array_equal(wire.mask_arrays()[1], mask_arrays[1])


def test_rle_size_can_be_given_when_unknown(rle_output, mask_arrays):
    document = build("fal-ai/sam-3/image-rle", rle_output)
    np.testing.assert_array_equal(document.mask_arrays(size=(WIDTH, HEIGHT))[0], mask_arrays[0])


def test_to_rows_for_rle_has_area_and_tight_boxes(rle_output, mask_arrays):
    document = build("fal-ai/sam-3/image-rle", rle_output, image={"source": "in.png", "width": WIDTH, "height": HEIGHT})
    rows = document.to_rows(label="cat")
    assert [r["area"] for r in rows] == [int(m.sum()) for m in mask_arrays] == document.areas
    for row, mask in zip(rows, mask_arrays):
        assert (row["x_min"], row["y_min"], row["x_max"], row["y_max"]) == mask_box(mask)
        assert row["mask_url"] is None and row["label"] == "cat" and row["image"] == "in.png"
    assert [r["score"] for r in rows] == [0.8, 0.6]


def test_rle_box_matches_the_decoded_mask_box_for_random_masks():
    rng = np.random.default_rng(7)
    for width, height in [(1, 1), (5, 3), (17, 9), (40, 30)]:
        for density in (0.0, 0.05, 0.5, 0.95, 1.0):
            mask = rng.random((height, width)) < density
            document = build(
                "fal-ai/sam-3/image-rle", {"rle": [rle_encode(mask)]}, image={"width": width, "height": height}
            )
            row = document.to_rows()[0]
            box = mask_box(mask)
            got = None if row["x_min"] is None else (row["x_min"], row["y_min"], row["x_max"], row["y_max"])
            assert got == (None if box is None else tuple(float(v) for v in box)), (width, height, density)
            assert row["area"] == int(mask.sum())


def test_mask_arrays_from_stored_png_files(tmp_path, image_output, mask_arrays):
    stored = {}
    for i, mask in enumerate(mask_arrays):
        path = tmp_path / f"mask_{i:03d}.png"
        path.write_bytes(mask_to_png(mask))
        # one plain path, one file:// URL: both are local
        stored[f"{MEDIA}/mask_{i}.png"] = str(path) if i == 0 else path.as_uri()
    document = build("fal-ai/sam-3/image", image_output, stored=stored, output_location=str(tmp_path))
    arrays = document.mask_arrays()  # no fetch: the stored copies are read directly
    for got, want in zip(arrays, mask_arrays):
        np.testing.assert_array_equal(got, want)
    # A document that names no output location (or files outside it) gets no local file read.
    unplaced = build("fal-ai/sam-3/image", image_output, stored=stored)
    with pytest.raises(ResultDocumentError, match=r"masks\[0\]\.stored_url: names a local file, but the document"):
        unplaced.mask_arrays()


def test_mask_arrays_fetch_and_read_and_their_errors(image_output, downloads, mask_arrays, mask_pngs):
    document = build("fal-ai/sam-3/image", image_output)
    np.testing.assert_array_equal(document.mask_arrays(downloads)[0], mask_arrays[0])
    assert downloads.calls == [f"{MEDIA}/mask_0.png", f"{MEDIA}/mask_1.png"]
    with pytest.raises(ResultDocumentError, match=r"masks\[0\]\.url.*fetch=FalHook\(\)\.download"):
        document.mask_arrays()

    remote = build(
        "fal-ai/sam-3/image",
        image_output,
        stored={f"{MEDIA}/mask_{i}.png": f"s3://c@b/r/mask_{i:03d}.png" for i in range(2)},
    )
    copies = Downloads({f"s3://c@b/r/mask_{i:03d}.png": mask_pngs[f"{MEDIA}/mask_{i}.png"] for i in range(2)})
    np.testing.assert_array_equal(remote.mask_arrays(read=copies)[1], mask_arrays[1])
    wire = remote.to_xcom()
    for mask in wire["masks"]:
        mask["url"] = None
    with pytest.raises(ResultDocumentError, match="ObjectStoragePath"):
        SegmentationResult.from_xcom(wire).mask_arrays()
    for mask in wire["masks"]:
        mask["stored_url"] = None
    with pytest.raises(ResultDocumentError, match="sync_mode"):
        SegmentationResult.from_xcom(wire).mask_arrays()


def test_embedding_load_without_a_stored_copy_says_what_to_do():
    document = build("fal-ai/sam-3/image/embed", {"embedding_b64": base64.b64encode(b"abcd").decode()})
    with pytest.raises(ResultDocumentError, match="stored_url.*output_path"):
        document.load_bytes()
    remote = document.model_copy(update={"stored_url": "s3://c@b/r/embedding.bin"})
    with pytest.raises(ResultDocumentError, match="ObjectStoragePath"):
        remote.load_bytes()


def test_every_argument_free_reader_is_a_property_whose_value_is_plain_json(image_output):
    """One convention: a task can return any argument-free reader as is (a bound method is not JSON)."""
    import inspect

    from airflow_provider_sam3.models.documents import EmbeddingResult, FilesResult, SegmentationResult

    for cls in (SegmentationResult, EmbeddingResult, FilesResult):
        for name, member in vars(cls).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            required = [
                p
                for p in list(inspect.signature(member).parameters.values())[1:]
                if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            ]
            optional_io = {"fetch", "read", "source"} & set(inspect.signature(member).parameters)
            assert required or optional_io, f"{cls.__name__}.{name}() takes nothing: make it a property"
    document = build("fal-ai/sam-3/image", image_output, image={"width": WIDTH, "height": HEIGHT})
    json.dumps([document.scores, document.pixel_boxes, document.areas, document.is_rle])
