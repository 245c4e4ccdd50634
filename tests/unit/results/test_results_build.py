"""build_result: every endpoint kind becomes the right small document, read from the registry's output models."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timezone

import pytest
from results_helpers import HEIGHT, MEDIA, SEEDS, WIDTH, build

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.models.results import (
    EmbeddingResult,
    FilesResult,
    ResultDocumentError,
    SegmentationResult,
)

IMAGE = {"source": "s3://photos/truck.jpg", "width": 800, "height": 600}


def test_every_registry_endpoint_has_a_document_kind():
    samples = {
        "image": {"masks": []},
        "image-rle": {"rle": ""},
        "embed": {"embedding_b64": base64.b64encode(b"\0" * 8).decode()},
        "video": {"video": {"url": f"{MEDIA}/out.mp4"}},
        "video-rle": {"rle": ["1 2"]},
        "video-rle-objects": {"frames": [], "width": 4, "height": 4, "num_frames": 0},
        "3d-objects": {"gaussian_splat": {"url": f"{MEDIA}/s.ply"}, "metadata": []},
        "3d-body": {
            "model_glb": {"url": f"{MEDIA}/b.glb"},
            "visualization": {"url": f"{MEDIA}/v.png"},
            "metadata": {"num_people": 0, "people": []},
        },
        "3d-align": {
            "body_mesh_ply": {"url": f"{MEDIA}/b.ply"},
            "model_glb": {"url": f"{MEDIA}/m.glb"},
            "visualization": {"url": f"{MEDIA}/v.png"},
            "metadata": {
                "person_id": 0,
                "scale_factor": 1.0,
                "translation": [0, 0, 0],
                "focal_length": 1.0,
                "cropped_vertices_count": 1,
                "target_points_count": 1,
            },
        },
    }
    for endpoint_id, endpoint in ENDPOINTS.items():
        document = build(endpoint_id, samples[endpoint.kind])
        assert document.endpoint_id == endpoint_id
        assert document.schema_version == 1


def test_third_party_image_response():
    document = build("fal-ai/sam-3/image", SEEDS["third_party_response"], image=IMAGE)
    assert isinstance(document, SegmentationResult)
    assert document.kind == "sam3.segmentation"
    assert document.request_id == "req-1"
    assert document.cost_usd == 0.005
    assert document.timings.model_dump() == {
        "submitted_at": datetime(1970, 1, 1, 0, 16, 40, tzinfo=timezone.utc),
        "completed_at": datetime(1970, 1, 1, 0, 16, 52, 500000, tzinfo=timezone.utc),
        "wait_seconds": 12.5,
        "inference_seconds": 2.25,
    }
    assert document.to_xcom()["timings"] == {  # what a person reads in XCom: UTC moments, not epoch floats
        "submitted_at": "1970-01-01T00:16:40Z",
        "completed_at": "1970-01-01T00:16:52.500000Z",
        "wait_seconds": 12.5,
        "inference_seconds": 2.25,
    }
    assert document.image.model_dump() == IMAGE
    [mask] = document.masks
    assert mask.model_dump() == {
        "index": 0,
        "url": "https://v3b.fal.media/files/b/x/mask.png",
        "stored_url": None,
        "content_type": "image/png",
        "score": 0.988,
        "box": None,
        "pixel_box": None,
        "rle": None,
    }
    assert document.preview.url == "https://v3b.fal.media/files/b/x/preview.png"
    assert document.preview.field == "image"
    assert document.rle_size is None and document.files == []


def test_seed_example_with_empty_metadata_and_empty_url():
    document = build("fal-ai/sam-3/image", SEEDS["example_response"])
    [mask] = document.masks
    assert (mask.url, mask.score, mask.box, mask.pixel_box) == (None, None, None, None)
    assert document.preview is None and document.image is None


def test_pixel_box_from_normalized_box_and_image_size():
    output = {"masks": [{"url": f"{MEDIA}/m.png"}], "boxes": [[0.5, 0.5, 0.2, 0.4]]}
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.masks[0].box == [0.5, 0.5, 0.2, 0.4]
    assert document.masks[0].pixel_box == [320.0, 180.0, 480.0, 420.0]
    assert document.pixel_boxes == [[320.0, 180.0, 480.0, 420.0]]


def test_pixel_box_falls_back_to_the_mask_size_when_the_image_size_is_unknown():
    output = {"masks": [{"url": f"{MEDIA}/m.png", "width": 100, "height": 50}], "boxes": [[0.5, 0.5, 0.2, 0.4]]}
    document = build("fal-ai/sam-3/image", output, image={"source": "https://x/y.jpg"})
    assert document.masks[0].pixel_box == [40.0, 15.0, 60.0, 35.0]


def test_scores_and_boxes_from_metadata_when_lists_are_absent():
    output = {
        "masks": [{"url": f"{MEDIA}/a.png"}, {"url": f"{MEDIA}/b.png"}],
        # out of order on purpose: entries are matched by their index, not their position
        "metadata": [{"index": 1, "score": 0.5, "box": [0.25, 0.25, 0.5, 0.5]}, {"index": 0, "score": 0.75}],
    }
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.scores == [0.75, 0.5]
    assert document.masks[0].box is None
    assert document.masks[1].pixel_box == [0.0, 0.0, 400.0, 300.0]


def test_explicit_lists_win_over_metadata_and_nulls_fall_back():
    output = {
        "masks": [{"url": f"{MEDIA}/a.png"}, {"url": f"{MEDIA}/b.png"}],
        "metadata": [
            {"index": 0, "score": 0.1, "box": [0.1, 0.1, 0.1, 0.1]},
            {"index": 1, "score": 0.2, "box": [0.5, 0.5, 1.0, 1.0]},
        ],
        "scores": [0.9],
        "boxes": [[0.5, 0.5, 0.5, 0.5], None],
    }
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.scores == [0.9, 0.2]  # the list is shorter than the masks: metadata fills in
    assert document.masks[0].box == [0.5, 0.5, 0.5, 0.5]
    assert document.masks[1].box == [0.5, 0.5, 1.0, 1.0]  # null in boxes, known in metadata


def test_null_boxes_and_no_annotations():
    output = {"masks": [{"url": f"{MEDIA}/a.png"}], "boxes": [None], "scores": [None]}
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.masks[0].box is None and document.masks[0].pixel_box is None
    assert document.scores == [None]


def test_a_malformed_box_is_stored_as_null_with_a_note_and_the_result_kept():
    output = {"masks": [{"url": f"{MEDIA}/a.png"}], "boxes": [[0.5, 0.5, 0.2]], "scores": [0.9]}
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.masks[0].box is None and document.masks[0].pixel_box is None
    assert document.masks[0].score == 0.9 and document.masks[0].url == f"{MEDIA}/a.png"  # the paid result is kept
    assert document.notes == [
        "masks[0].box: fal sent [0.5, 0.5, 0.2], not four finite numbers [cx, cy, w, h]; stored as null"
    ]


def test_nan_scores_are_stored_as_null_and_a_box_outside_the_image_is_clamped():
    output = {
        "masks": [{"url": f"{MEDIA}/a.png"}, {"url": f"{MEDIA}/b.png"}],
        "scores": [float("nan"), float("inf")],
        "boxes": [[-5, -5, 1e6, 1e6], [0.5, 0.5, 0.2, 0.2]],
    }
    document = build("fal-ai/sam-3/image", output, image=IMAGE)
    assert document.scores == [None, None]
    assert document.masks[0].box == [0.5, 0.5, 1.0, 1.0]  # the whole image, not 48 million pixels
    assert document.pixel_boxes[0] == [0.0, 0.0, float(IMAGE["width"]), float(IMAGE["height"])]
    assert document.masks[1].box == [0.5, 0.5, 0.2, 0.2]  # a box inside the image is untouched
    assert len(document.notes) == 3 and "reaches outside the image; clamped" in document.notes[0]
    json.loads(json.dumps(document.to_xcom(), allow_nan=False))  # strict JSON: no NaN anywhere


def test_sync_mode_data_uris_are_not_kept_in_the_document():
    data_uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    output = {"masks": [{"url": data_uri}], "image": {"url": data_uri}}
    document = build("fal-ai/sam-3/image", output, image={"source": data_uri, "width": 4, "height": 4})
    assert document.masks[0].url is None
    assert document.masks[0].content_type == "image/png"
    assert document.preview.url is None
    assert document.image.source.startswith("data:image/png;base64,<")
    assert "fake" not in json.dumps(document.to_xcom())


def test_stored_mapping_sets_stored_urls():
    output = {"masks": [{"url": f"{MEDIA}/a.png"}], "image": {"url": f"{MEDIA}/p.png"}}
    stored = {f"{MEDIA}/a.png": "s3://c@b/req-1/mask_000.png", f"{MEDIA}/p.png": "s3://c@b/req-1/preview.png"}
    document = build("fal-ai/sam-3/image", output, stored=stored, output_location="s3://c@b/req-1")
    assert document.masks[0].stored_url == "s3://c@b/req-1/mask_000.png"
    assert document.preview.stored_url == "s3://c@b/req-1/preview.png"
    assert document.output_location == "s3://c@b/req-1"


@pytest.mark.parametrize("rle", ["1 4 11 2", ["1 4 11 2"]])
def test_image_rle_with_string_or_list(rle):
    document = build(
        "fal-ai/sam-3/image-rle",
        {"rle": rle, "boxes": [[0.5, 0.5, 1, 1]]},
        image={"source": "a.png", "width": 10, "height": 2},
    )
    assert isinstance(document, SegmentationResult) and document.is_rle
    assert document.rle_size == [10, 2]
    [mask] = document.masks
    assert (mask.rle, mask.url, mask.pixel_box) == ("1 4 11 2", None, [0.0, 0.0, 10.0, 2.0])


def test_image_rle_list_keeps_every_mask_in_order():
    document = build(
        "fal-ai/sam-3/image-rle",
        {"rle": ["1 1", "2 1", ""], "scores": [0.1, 0.2, 0.3]},
        image={"width": 2, "height": 2},
    )
    assert [m.rle for m in document.masks] == ["1 1", "2 1", ""]
    assert [m.index for m in document.masks] == [0, 1, 2]
    assert document.scores == [0.1, 0.2, 0.3]


def test_image_rle_without_image_size_has_no_rle_size():
    document = build("fal-ai/sam-3/image-rle", {"rle": "1 1"})
    assert document.rle_size is None
    with pytest.raises(ResultDocumentError, match="rle_size"):
        document.mask_arrays()


def test_image_rle_file_variant_lists_the_file():
    output = {
        "rle": {"url": f"{MEDIA}/rle.txt", "content_type": "text/plain"},
        "boundingbox_frames_zip": {"url": f"{MEDIA}/boxes.zip"},
    }
    document = build("fal-ai/sam-3/image-rle", output, image={"width": 2, "height": 2})
    assert document.masks == []
    assert [f.field for f in document.files] == ["rle", "boundingbox_frames_zip"]
    with pytest.raises(ResultDocumentError, match="as a file"):
        document.mask_arrays()


def test_embedding_is_a_reference_not_the_blob():
    payload = bytes(range(256)) * 4
    encoded = base64.b64encode(payload).decode()
    document = build("fal-ai/sam-3/image/embed", {"embedding_b64": encoded}, image=IMAGE)
    assert isinstance(document, EmbeddingResult)
    assert document.kind == "sam3.embedding"
    assert document.byte_size == 1024
    assert document.sha256 == hashlib.sha256(payload).hexdigest()
    assert document.stored_url is None
    assert encoded not in json.dumps(document.to_xcom())
    stored = build("fal-ai/sam-3/image/embed", {"embedding_b64": encoded}, stored={"embedding_b64": "/e/x.bin"})
    assert stored.stored_url == "/e/x.bin"


def test_3d_objects_output_lists_its_files_and_keeps_metadata():
    output = {
        "gaussian_splat": {
            "url": f"{MEDIA}/splat.ply",
            "content_type": "application/octet-stream",
            "file_name": "splat.ply",
        },
        "model_glb": {"url": f"{MEDIA}/scene.glb", "content_type": "model/gltf-binary"},
        "metadata": [{"object_index": 0, "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation": [0, 0, 1]}],
        "individual_glbs": [{"url": f"{MEDIA}/o0.glb"}, {"url": f"{MEDIA}/o1.glb"}],
        "artifacts_zip": None,
    }
    document = build("fal-ai/sam-3/3d-objects", output, image=IMAGE)
    assert isinstance(document, FilesResult) and document.kind == "sam3.files"
    assert [f.field for f in document.files] == [
        "gaussian_splat",
        "model_glb",
        "individual_glbs[0]",
        "individual_glbs[1]",
    ]
    assert document.file("model_glb").content_type == "model/gltf-binary"
    assert document.file("gaussian_splat").file_name == "splat.ply"
    assert document.data == {
        "metadata": [{"object_index": 0, "rotation": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "translation": [0, 0, 1]}]
    }
    assert document.data_bytes == len(json.dumps(document.data, separators=(",", ":")))
    assert document.cost_usd == 0.02  # fal publishes $0.02 per unit (tests/fixtures/fal_published_schemas.json)


def test_3d_body_output():
    person = {
        "person_id": 0,
        "bbox": [1, 2, 3, 4],
        "focal_length": 500.0,
        "pred_cam_t": [0, 0, 5],
        "keypoints_2d": [[1.0, 2.0]] * 70,
    }
    output = {
        "model_glb": {"url": f"{MEDIA}/body.glb"},
        "visualization": {"url": f"{MEDIA}/vis.png"},
        "meshes": [{"url": f"{MEDIA}/p0.ply"}],
        "metadata": {"num_people": 1, "people": [person], "keypoint_names": ["nose"]},
    }
    document = build("fal-ai/sam-3/3d-body", output, image=IMAGE)
    assert [f.field for f in document.files] == ["model_glb", "visualization", "meshes[0]"]
    assert document.data["metadata"]["people"][0]["keypoints_2d"][0] == [1.0, 2.0]
    assert document.data["metadata"]["keypoint_names"] == ["nose"]
    assert document.cost_usd == 0.02  # fal publishes $0.02 per unit


def test_video_rle_output_keeps_frames_and_prices_by_frame_count():
    frames = 20
    output = {
        "rle": ["1 3"] * frames,
        "boxes": [[0.5, 0.5, 0.1, 0.1]] + [None] * (frames - 1),
        "scores": [None] * frames,
    }
    document = build("fal-ai/sam-3/video-rle", output)
    assert isinstance(document, FilesResult)
    assert document.files == []
    assert document.data["rle"] == ["1 3"] * frames
    assert document.data["boxes"][1] is None
    assert document.cost_usd == 0.01  # 20 frames = two 16-frame units at $0.005
    assert document.image is None


def test_video_rle_video_branch_and_video_output():
    video = {"url": f"{MEDIA}/out.mp4", "content_type": "video/mp4", "file_name": "out.mp4"}
    document = build("fal-ai/sam-3/video-rle", {"video": video})
    assert [f.field for f in document.files] == ["video"] and document.data is None
    document = build("fal-ai/sam-3/video", {"video": video, "boundingbox_frames_zip": {"url": f"{MEDIA}/b.zip"}})
    assert [f.field for f in document.files] == ["video", "boundingbox_frames_zip"]
    assert document.cost_usd is None  # frames unknown: no estimate rather than a wrong one


def test_video_rle_objects_frames_are_data():
    output = {
        "frames": [{"frame_index": 0, "objects": [{"track_id": 3, "rle": "1 2"}]}],
        "width": WIDTH,
        "height": HEIGHT,
        "num_frames": 1,
    }
    document = build("fal-ai/sam-3/video-rle-objects", output)
    assert document.data == output


def test_extra_file_like_fields_are_listed():
    output = {"video": {"url": f"{MEDIA}/out.mp4"}, "new_thing": {"url": f"{MEDIA}/thumb.jpg", "file_size": 3}}
    document = build("fal-ai/sam-3/video", output)
    assert [f.field for f in document.files] == ["video", "new_thing"]


def test_output_not_matching_the_model_names_the_field():
    with pytest.raises(ResultDocumentError) as info:
        build("fal-ai/sam-3/image", {"scores": [0.5]})
    assert "masks" in str(info.value) and "fal-ai/sam-3/image" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_submit_time_leaves_wait_unknown():
    from results_helpers import reference

    from airflow_provider_sam3.models.results import build_result

    ref = reference().model_copy(update={"submitted_at": None})
    document = build_result(
        ENDPOINTS["fal-ai/sam-3/image"],
        {"masks": []},
        reference=ref,
        image=None,
        completed_at=5.0,
        inference_seconds=None,
    )
    assert document.timings.wait_seconds is None
    assert document.timings.completed_at == datetime(1970, 1, 1, 0, 0, 5, tzinfo=timezone.utc)


def test_mask_size_reported_is_width_height():
    document = build(
        "fal-ai/sam-3/image",
        {"masks": [{"url": f"{MEDIA}/a.png"}], "boxes": [[0.5, 0.5, 1, 1]]},
        image={"width": WIDTH, "height": HEIGHT},
    )
    assert document.masks[0].pixel_box == [0.0, 0.0, float(WIDTH), float(HEIGHT)]


def test_an_rle_box_comes_from_checked_runs():
    """A one-number RLE is malformed: a clear error naming the mask, never a TypeError; an empty one has no box."""
    from airflow_provider_sam3.models.document_fields import rle_box

    assert rle_box("", (4, 4), "masks[0].rle") is None
    assert rle_box("1 2", (4, 4), "masks[0].rle") == (0.0, 0.0, 2.0, 1.0)
    assert rle_box("3 4", (4, 4), "masks[0].rle") == (0.0, 0.0, 4.0, 2.0)  # a run that wraps a row spans all columns
    with pytest.raises(ResultDocumentError, match=r"masks\[0\]\.rle: has 1 integers, an odd number"):
        rle_box("5", (4, 4), "masks[0].rle")


def test_a_document_with_epoch_second_timings_still_reads_as_the_same_utc_moments():
    document = build("fal-ai/sam-3/image", SEEDS["third_party_response"], image=IMAGE)
    older = document.to_xcom()
    older["timings"] = {"submitted_at": 1000.0, "completed_at": 1012.5, "wait_seconds": 12.5}
    read = SegmentationResult.from_xcom(older)
    assert read.timings.submitted_at == document.timings.submitted_at
    assert read.timings.completed_at == document.timings.completed_at
    naive = {**older, "timings": {"completed_at": "2026-12-07T03:30:29"}}  # a moment without its zone is ambiguous
    with pytest.raises(ResultDocumentError, match="timings"):
        SegmentationResult.from_xcom(naive)
