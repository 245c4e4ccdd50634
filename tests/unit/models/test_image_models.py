"""The image endpoints' models: the seed's examples, fal's defaults, and every rejection naming its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_sam3.endpoints import get_endpoint
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models import SegmentImageOutput, SegmentImageRleOutput

SEED = json.loads((Path(__file__).parents[2] / "fixtures" / "sam3_image_seed_examples.json").read_text())
IMAGE = get_endpoint("fal-ai/sam-3/image")
URL = SEED["required_request"]["image_url"]


def reject(arguments: dict, endpoint=IMAGE) -> InputValidationError:
    with pytest.raises(InputValidationError) as caught:
        endpoint.validate_input(arguments)
    return caught.value


def test_seed_required_example_validates_and_sends_fal_default_prompt_explicitly():
    body = IMAGE.validate_input(SEED["required_request"]).to_request()
    assert body["image_url"] == URL
    assert body["prompt"] == "wheel"  # what fal would do; now written in the request


def test_seed_full_example_round_trips_every_given_field():
    body = IMAGE.validate_input(SEED["full_request"]).to_request()
    for key, value in SEED["full_request"].items():
        assert body[key] == value
    assert body["return_multiple_masks"] is False and body["include_scores"] is False


def test_boxes_only_request_does_not_ask_for_wheels():
    body = IMAGE.validate_input({"image_url": URL, "box_prompts": [{"x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}]})
    assert body.to_request()["prompt"] == ""


def test_points_only_request_does_not_ask_for_wheels():
    body = IMAGE.validate_input({"image_url": URL, "point_prompts": [{"x": 3, "y": 4, "label": 1}]})
    assert body.to_request()["prompt"] == ""


def test_explicit_prompt_is_kept_with_boxes():
    body = IMAGE.validate_input(
        {"image_url": URL, "prompt": "car", "box_prompts": [{"x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}]}
    )
    assert body.to_request()["prompt"] == "car"


def test_request_body_has_exact_fal_field_names_and_defaults():
    body = IMAGE.validate_input({"image_url": URL, "prompt": "shoe"}).to_request()
    assert body == {
        "image_url": URL,
        "prompt": "shoe",
        "point_prompts": [],
        "box_prompts": [],
        "apply_mask": True,
        "sync_mode": False,
        "output_format": "png",
        "return_multiple_masks": False,
        "max_masks": 3,
        "include_scores": False,
        "include_boxes": False,
    }


@pytest.mark.parametrize("label", [0, 1, "0", "1", " 1 "])
def test_label_accepts_integers_and_legacy_strings_and_sends_integers(label):
    body = IMAGE.validate_input({"image_url": URL, "point_prompts": [{"x": 1, "y": 1, "label": label}]}).to_request()
    assert body["point_prompts"][0]["label"] == int(str(label).strip())


@pytest.mark.parametrize(
    ("arguments", "field", "fragment"),
    [
        ({"max_masks": 33}, "max_masks", "32"),
        ({"max_masks": 0}, "max_masks", "1"),
        ({"point_prompts": [{"x": 1, "y": 2, "label": 2}]}, "point_prompts[0].label", "0 or 1"),
        ({"point_prompts": [{"x": 1, "y": 2, "label": True}]}, "point_prompts[0].label", "foreground"),
        ({"box_prompts": [{"x_min": 50, "y_min": 0, "x_max": 5, "y_max": 9}]}, "box_prompts[0].x_max", "x_min"),
        ({"box_prompts": [{"x_min": 0, "y_min": 9, "x_max": 5, "y_max": 9}]}, "box_prompts[0].y_max", "y_min"),
        ({"box_prompts": [{"x_min": -1, "y_min": 0, "x_max": 5, "y_max": 9}]}, "box_prompts[0].x_min", "0"),
        ({"point_prompts": [{"x": 1.5, "y": 2}]}, "point_prompts[0].x", "integer"),
        ({"output_format": "gif"}, "output_format", "'jpeg', 'png' or 'webp'"),
        ({"max_mask": 4}, "max_mask", "did you mean 'max_masks'"),
        ({"point_prompts": [{"x": 1, "y": 2, "lable": 1}]}, "point_prompts[0].lable", "did you mean 'label'"),
        ({"image_url": "ftp://host/x.png"}, "image_url", "http(s) URL or a data: URI"),
        ({"image_url": "/tmp/local.png"}, "image_url", "http(s) URL or a data: URI"),
        ({"image_url": "https://"}, "image_url", "no host"),
        ({"image_url": ""}, "image_url", "empty"),
        ({"include_scores": "maybe"}, "include_scores", "boolean"),
    ],
)
def test_rejected_input_names_its_field(arguments, field, fragment):
    error = reject({"image_url": URL, "prompt": "x", **arguments})
    assert error.field == field
    assert field in str(error)
    assert fragment in str(error)
    assert "nothing was sent to fal" in str(error)


def test_missing_image_url_is_named():
    assert reject({"prompt": "x"}).field == "image_url"


def test_all_field_errors_are_listed_not_only_the_first():
    error = reject({"image_url": URL, "max_masks": 99, "output_format": "gif"})
    assert set(error.fields) == {"max_masks", "output_format"}


def test_seed_example_response_parses():
    out = SegmentImageOutput.model_validate(SEED["example_response"])
    assert out.masks[0].width == 1024 and out.masks[0].file_size == 4404019
    assert out.metadata[0].index is None and out.metadata[0].box is None


def test_third_party_response_with_null_box_parses():
    out = SegmentImageOutput.model_validate(SEED["third_party_response"])
    assert out.boxes == [None]
    assert out.metadata[0].score == pytest.approx(0.988)
    assert out.image.width == 800


def test_output_keeps_fields_fal_adds_later():
    out = SegmentImageOutput.model_validate({**SEED["example_response"], "timings": {"inference": 0.2}})
    assert out.model_extra["timings"] == {"inference": 0.2}


def test_output_without_masks_is_refused():
    with pytest.raises(ValueError, match="masks"):
        SegmentImageOutput.model_validate({"metadata": []})


@pytest.mark.parametrize(("rle", "expected"), [("1 3 10 2", ["1 3 10 2"]), (["1 3", "", "7 1"], ["1 3", "", "7 1"])])
def test_image_rle_accepts_string_or_list(rle, expected):
    out = SegmentImageRleOutput.model_validate({"rle": rle, "scores": [0.9], "boxes": [[0.5, 0.5, 0.2, 0.1]]})
    assert out.rle_strings == expected


def test_image_rle_file_variant_parses_and_says_where_the_masks_are():
    out = SegmentImageRleOutput.model_validate({"rle": {"url": "https://x/masks.rle", "content_type": "text/plain"}})
    with pytest.raises(TypeError, match="https://x/masks.rle"):
        out.rle_strings  # noqa: B018
