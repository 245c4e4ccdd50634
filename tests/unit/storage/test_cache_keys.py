"""The result cache's key (``storage.cache_keys.request_key``): the same computation is one key however it is asked
for, and anything that changes what fal computes is another key."""

from __future__ import annotations

import base64

import pytest

from airflow_provider_sam3.endpoints import get_endpoint
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.storage.cache_keys import content_digest, file_fields, request_key

IMAGE = get_endpoint("fal-ai/sam-3/image")
PHOTO = b"\x89PNG\r\n\x1a\n not really a photo, but bytes all the same"
DATA_URI = "data:image/png;base64," + base64.b64encode(PHOTO).decode()
STORED = "https://v3.fal.media/files/abc/photo.png"  # where an uploaded copy of PHOTO lives


def key(body: dict, **kwargs) -> str | None:
    return request_key(IMAGE, body, **kwargs)


def test_the_same_photo_and_request_is_one_key_however_the_photo_was_sent():
    inline = key({"image_url": DATA_URI, "prompt": "cat"})
    uploaded = key({"image_url": STORED, "prompt": "cat"}, digests={"image_url": content_digest(PHOTO)})
    assert inline is not None and len(inline) == 64 and inline == uploaded


def test_fal_s_defaults_are_filled_in_and_field_order_does_not_matter():
    default_masks = IMAGE.input_model.model_fields["max_masks"].default
    plain = key({"image_url": DATA_URI, "prompt": "cat"})
    explicit = key({"max_masks": default_masks, "prompt": "cat", "image_url": DATA_URI})
    assert plain == explicit


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "dog"},
        {"max_masks": 5},
        {"include_scores": True},
        {"image_url": "data:image/png;base64," + base64.b64encode(PHOTO + b"!").decode()},
    ],
    ids=["prompt", "max_masks", "include_scores", "one-byte-more-photo"],
)
def test_anything_fal_computes_differently_is_another_key(change):
    assert key({"image_url": DATA_URI, "prompt": "cat", **change}) != key({"image_url": DATA_URI, "prompt": "cat"})


def test_the_endpoint_version_and_salt_are_part_of_the_key():
    body = {"image_url": DATA_URI, "prompt": "cat"}
    assert key(body) != key(body, salt="after the bug fix") != key(body, salt="another")
    assert request_key(get_endpoint("fal-ai/sam-3-1/image"), body) != key(body)


def test_an_http_input_is_cached_only_when_urls_are_keyed():
    body = {"image_url": "https://photos.example.com/cat.png", "prompt": "cat"}
    assert key(body) is None
    by_url = key(body, key_urls=True)
    assert by_url is not None and by_url != key(
        {**body, "image_url": "https://photos.example.com/dog.png"}, key_urls=True
    )


@pytest.mark.parametrize(
    "digest", ["md5:abc", "sha256:" + "g" * 64, "sha256:" + "a" * 63, content_digest(PHOTO).upper()]
)
def test_a_malformed_digest_is_refused_naming_the_field(digest):
    with pytest.raises(InputValidationError, match="image_url"):
        key({"image_url": STORED, "prompt": "cat"}, digests={"image_url": digest})


def test_a_body_the_model_refuses_has_no_key():
    with pytest.raises(InputValidationError, match="max_masks"):
        key({"image_url": DATA_URI, "prompt": "cat", "max_masks": float("nan")})


def test_file_fields_come_from_the_registry():
    assert file_fields(IMAGE) == ("image_url",)
    assert "video_url" in file_fields(get_endpoint("fal-ai/sam-3/video"))
