"""The endpoint registry and the video, embed and 3D models."""

from __future__ import annotations

import pytest

from airflow_provider_sam3.endpoints import ENDPOINTS, endpoint_for, get_endpoint
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models import RequestReference

IMG = "https://example.com/a.png"
VID = "https://example.com/a.mp4"

EXPECTED_IDS = {
    "fal-ai/sam-3/image",
    "fal-ai/sam-3/image-rle",
    "fal-ai/sam-3/image/embed",
    "fal-ai/sam-3/video",
    "fal-ai/sam-3/video-rle",
    "fal-ai/sam-3/video-rle-objects",
    "fal-ai/sam-3/3d-objects",
    "fal-ai/sam-3/3d-body",
    "fal-ai/sam-3/3d-align",
    "fal-ai/sam-3-1/image",
    "fal-ai/sam-3-1/image-rle",
    "fal-ai/sam-3-1/video",
    "fal-ai/sam-3-1/video-rle",
}

# One valid minimal input per endpoint: the registry must accept each and refuse an unknown field on each.
MINIMAL_INPUT = {
    "image": {"image_url": IMG},
    "image-rle": {"image_url": IMG},
    "embed": {"image_url": IMG},
    "video": {"video_url": VID},
    "video-rle": {"video_url": VID},
    "video-rle-objects": {"video_url": VID},
    "3d-objects": {"image_url": IMG},
    "3d-body": {"image_url": IMG},
    "3d-align": {"image_url": IMG, "body_mesh_url": "https://example.com/body.ply"},
}


def test_registry_holds_every_sam3_and_sam31_endpoint():
    assert set(ENDPOINTS) == EXPECTED_IDS


@pytest.mark.parametrize("endpoint_id", sorted(EXPECTED_IDS))
def test_every_endpoint_validates_a_minimal_input_and_rejects_unknown_fields(endpoint_id):
    endpoint = get_endpoint(endpoint_id)
    minimal = MINIMAL_INPUT[endpoint.kind]
    assert endpoint.validate_input(minimal).to_request().items() >= minimal.items()
    with pytest.raises(InputValidationError) as caught:
        endpoint.validate_input({**minimal, "typo_field": 1})
    assert caught.value.field == "typo_field"


@pytest.mark.parametrize(
    ("endpoint_id", "app_id"),
    [("fal-ai/sam-3/image/embed", "fal-ai/sam-3"), ("fal-ai/sam-3-1/video-rle", "fal-ai/sam-3-1")],
)
def test_app_id_drops_the_sub_path(endpoint_id, app_id):
    assert get_endpoint(endpoint_id).app_id == app_id


def test_prices_and_billing_units():
    assert get_endpoint("fal-ai/sam-3/image").estimate_cost(requests=1000) == pytest.approx(5.0)
    assert get_endpoint("fal-ai/sam-3/3d-objects").estimate_cost() == pytest.approx(0.02)
    video = get_endpoint("fal-ai/sam-3/video")
    assert video.billing_unit == "16 frames"
    assert video.estimate_cost(frames=17) == pytest.approx(0.010)
    assert video.estimate_cost() is None  # frame count unknown: no guess
    assert get_endpoint("fal-ai/sam-3-1/video").estimate_cost(frames=16) == pytest.approx(0.01)
    assert get_endpoint("fal-ai/sam-3-1/video-rle").estimate_cost(frames=16) is None  # no price known


def test_unknown_endpoint_lists_the_known_ones_and_suggests():
    with pytest.raises(InputValidationError) as caught:
        get_endpoint("fal-ai/sam-3/imag")
    assert caught.value.field == "endpoint_id"
    assert "did you mean 'fal-ai/sam-3/image'" in str(caught.value)
    assert "fal-ai/sam-3/3d-body" in str(caught.value)


def test_version_switch_finds_sam31_and_refuses_what_it_lacks():
    assert endpoint_for("image", "3.1").endpoint_id == "fal-ai/sam-3-1/image"
    assert endpoint_for("embed").endpoint_id == "fal-ai/sam-3/image/embed"
    with pytest.raises(InputValidationError, match="3d-body"):
        endpoint_for("3d-body", "3.1")
    with pytest.raises(InputValidationError) as caught:
        endpoint_for("image", "4")
    assert caught.value.field == "version"


def test_video_defaults_and_ranges():
    video = get_endpoint("fal-ai/sam-3/video")
    body = video.validate_input({"video_url": VID, "prompt": "person, cloth"}).to_request()
    assert body["detection_threshold"] == 0.5 and body["video_output_type"] == "X264 (.mp4)"
    assert body["apply_mask"] is True
    for bad, field in [
        ({"detection_threshold": 1.5}, "detection_threshold"),
        ({"video_output_type": "AV1"}, "video_output_type"),
        ({"point_prompts": [{"x": 1, "y": 1, "frame_index": 3}]}, "point_prompts[0].frame_index"),
    ]:
        with pytest.raises(InputValidationError) as caught:
            video.validate_input({"video_url": VID, **bad})
        assert caught.value.field == field
    v31 = get_endpoint("fal-ai/sam-3-1/video").validate_input({"video_url": VID}).to_request()
    assert v31["max_num_objects"] == 16
    with pytest.raises(InputValidationError):
        get_endpoint("fal-ai/sam-3/video").validate_input({"video_url": VID, "max_num_objects": 4})


def test_video_rle_defaults_and_frame_index_needs_mask():
    rle = get_endpoint("fal-ai/sam-3/video-rle")
    body = rle.validate_input({"video_url": VID}).to_request()
    assert body["apply_mask"] is False and body["boundingbox_zip"] is False
    with pytest.raises(InputValidationError, match="mask_url") as refused:
        rle.validate_input({"video_url": VID, "frame_index": 3})
    assert refused.value.field == "frame_index"


def test_video_rle_output_union_branches():
    out_model = get_endpoint("fal-ai/sam-3/video-rle").output_model
    rle_branch = out_model.model_validate(
        {"rle": ["1 2", ""], "boxes": [[0.5, 0.5, 0.1, 0.1], None], "scores": [None, None]}
    )
    assert rle_branch.frame_rles == ["1 2", ""]
    no_mask_frames = out_model.model_validate(
        {"rle": [None, "1 2"], "boxes": [None, None]}
    )  # a paid result still parses
    assert no_mask_frames.frame_rles == ["", "1 2"]
    video_branch = out_model.model_validate({"video": {"url": "https://x/v.mp4"}})
    assert video_branch.frame_rles == [] and video_branch.video.url == "https://x/v.mp4"
    with pytest.raises(ValueError, match="neither"):
        out_model.model_validate({"scores": []})


def test_video_rle_objects_output():
    out = get_endpoint("fal-ai/sam-3/video-rle-objects").parse_output(
        {
            "frames": [
                {"frame_index": 0, "objects": [{"track_id": 0, "rle": "1 4"}]},
                {"frame_index": 1, "objects": []},
            ],
            "width": 4,
            "height": 2,
            "num_frames": 2,
        }
    )
    assert out.frames[0].objects[0].track_id == 0 and out.frames[1].objects == []


def test_3d_objects_default_prompt_and_threshold_range():
    objects = get_endpoint("fal-ai/sam-3/3d-objects")
    assert objects.validate_input({"image_url": IMG}).to_request()["prompt"] == "car"
    boxes_only = objects.validate_input(
        {"image_url": IMG, "box_prompts": [{"x_min": 0, "y_min": 0, "x_max": 4, "y_max": 4}]}
    )
    assert boxes_only.to_request()["prompt"] == ""
    assert "detection_threshold" not in objects.validate_input({"image_url": IMG}).to_request()
    with pytest.raises(InputValidationError) as caught:
        objects.validate_input({"image_url": IMG, "detection_threshold": 0.05})
    assert caught.value.field == "detection_threshold"


def test_3d_outputs_parse_nested_metadata():
    objects = get_endpoint("fal-ai/sam-3/3d-objects").parse_output(
        {"gaussian_splat": {"url": "https://x/s.ply"}, "metadata": [{"object_index": 0, "rotation": [[0, 0, 0, 1]]}]}
    )
    assert objects.metadata[0].rotation == [[0, 0, 0, 1]]
    person = {
        "person_id": 0,
        "bbox": [1, 2, 3, 4],
        "focal_length": 500.0,
        "pred_cam_t": [0, 0, 5],
        "keypoints_2d": [[0.0, 0.0]] * 70,
        "global_rot": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    }
    body = get_endpoint("fal-ai/sam-3/3d-body").parse_output(
        {
            "model_glb": {"url": "https://x/m.glb"},
            "visualization": {"url": "https://x/v.png"},
            "metadata": {"num_people": 1, "people": [person]},
        }
    )
    assert len(body.metadata.people[0].keypoints_2d) == 70
    align = get_endpoint("fal-ai/sam-3/3d-align").parse_output(
        {
            "body_mesh_ply": {"url": "https://x/b.ply"},
            "model_glb": {"url": "https://x/m.glb"},
            "visualization": {"url": "https://x/v.png"},
            "metadata": {
                "person_id": 0,
                "scale_factor": 1.1,
                "translation": [0, 0, 1],
                "focal_length": 500.0,
                "cropped_vertices_count": 10,
                "target_points_count": 20,
            },
        }
    )
    assert align.metadata.scale_factor == pytest.approx(1.1)


def test_3d_align_requires_body_mesh():
    with pytest.raises(InputValidationError) as caught:
        get_endpoint("fal-ai/sam-3/3d-align").validate_input({"image_url": IMG})
    assert caught.value.field == "body_mesh_url"


def test_request_reference_round_trips_as_plain_json():
    import json

    ref = RequestReference(
        endpoint_id="fal-ai/sam-3/image",
        request_id="abc",
        status_url="https://q/s",
        response_url="https://q/r",
        cancel_url="https://q/c",
        submitted_at=12.5,
    )
    data = json.loads(json.dumps(ref.to_dict()))
    assert RequestReference.from_dict(data) == ref
