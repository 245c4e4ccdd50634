"""Evidence: malformed inputs fail the task before anything is sent to fal, naming the field and what is allowed.

One table (``CASES``) of malformed inputs across the single-request operators. Every case runs the code a real
task runs, against the emulator (so a request that slipped through would be counted there):

- ``test_bad_input_fails_before_submission``: every case, through ``render_template_fields()`` then ``execute()``
  (what the task runner calls), asserting the error class, the field and the message, and that the emulator saw
  no submission (nor any other queue call).
- ``test_bad_input_fails_the_task_under_dag_test``: a representative subset (``DAG_CASES``) as real task runs under
  ``dag.test()``: the task fails on its first try (a retry would fail the same way, so none is made), the task log
  names the field, and nothing was submitted.

``BATCH_CASES``: the batch operator's malformed inputs, run the same way.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.exceptions import FalAuthenticationError, InputValidationError
from airflow_provider_sam3.operators import sam3 as ops
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.queue import FalQueueOperator

IMAGE_FORMATS = "jpg, jpeg, png, webp, gif, avif"
SOURCES = "an http(s) URL, a data: URI, a local file path"
PATH_KINDS = "an absolute path, a file:// or object-store URL"


@dataclass(frozen=True)
class File:
    """A placeholder for one of the files ``bad_files`` writes (resolved when the case runs)."""

    name: str


@dataclass(frozen=True)
class Case:
    """One malformed input: the operator, its keyword arguments, and what the error must say."""

    id: str
    operator: type
    kwargs: dict[str, Any]
    field: str  # InputValidationError.field (or, for other errors, a word the message must contain)
    says: tuple[str, ...]  # substrings of the error message: the field, the reason, what is allowed
    error: type[Exception] = InputValidationError
    at: str = "execute"  # "init": refused when the DAG file is parsed, before any run
    unset_key: bool = False  # run with no fal connection and no FAL_KEY


IMG = File("photo")
SEG = ops.SegmentImageOperator
RLE = ops.SegmentImageRleOperator
EMBED = ops.EmbedImageOperator
VIDEO_URL = "https://media.example.com/clip.mp4"
MESH_URL = "https://media.example.com/body.ply"
ANY = FalQueueOperator
BOX = {"x_min": 10, "y_min": 10, "x_max": 40, "y_max": 40}


def nested(depth: int, inner: Any) -> Any:
    """``inner`` wrapped in ``depth`` lists."""
    for _ in range(depth):
        inner = [inner]
    return inner


def box(**changes: Any) -> list[dict[str, Any]]:
    return [{**BOX, **changes}]


CASES: list[Case] = [
    # ---- image sources: schemes, URLs, paths
    Case(
        "image_ftp_url",
        SEG,
        {"image": "ftp://example.com/shoe.png", "prompt": "shoe"},
        "image",
        ("image: ftp: sources are not accepted", SOURCES),
    ),
    Case(
        "image_javascript_uri",
        SEG,
        {"image": "javascript:alert(1)", "prompt": "shoe"},
        "image",
        ("image: javascript: sources are not accepted", SOURCES),
    ),
    Case(
        "image_s3_url_string",
        SEG,
        {"image": "s3://bucket/shoe.png", "prompt": "shoe"},
        "image",
        ("image: s3: sources are not accepted", "pass an airflow.sdk.ObjectStoragePath", SOURCES),
    ),
    Case(
        "image_url_without_host",
        SEG,
        {"image": "https:///shoe.png", "prompt": "shoe"},
        "image",
        ("image: 'https:///shoe.png' has no host name", SOURCES),
    ),
    Case(
        "image_url_with_space",
        SEG,
        {"image": "https://example.com/my shoe.png", "prompt": "shoe"},
        "image",
        ("image: is a URL containing whitespace", "percent-encode"),
    ),
    Case(
        "image_relative_missing_path",
        SEG,
        {"image": "photos/missing.png", "prompt": "shoe"},
        "image",
        ("image: the file 'photos/missing.png' does not exist", "path of an existing file"),
    ),
    Case(
        "image_absolute_missing_path",
        SEG,
        {"image": "/nonexistent/dir/shoe.png", "prompt": "shoe"},
        "image",
        ("image: the file '/nonexistent/dir/shoe.png' does not exist",),
    ),
    Case(
        "image_directory",
        SEG,
        {"image": File("directory"), "prompt": "shoe"},
        "image",
        ("is a directory, not a regular file", "only regular files are read"),
    ),
    Case(
        "image_fifo",
        SEG,
        {"image": File("fifo"), "prompt": "shoe"},
        "image",
        ("is a FIFO (named pipe), not a regular file", "would hang the task"),
    ),
    Case(
        "image_png_link_to_dev_zero",
        SEG,
        {"image": File("zero_link"), "prompt": "shoe"},
        "image",
        ("is a character device, not a regular file", "only regular files are read"),
    ),
    Case(
        "image_file_of_150_mb",
        SEG,
        {"image": File("sparse_150mb"), "prompt": "shoe"},
        "image",
        ("157,286,400 bytes", "67,108,864 read locally", "https URL"),
    ),
    Case(
        "box_prompts_nested_40_deep",
        SEG,
        {"image": IMG, "box_prompts": nested(40, BOX)},
        "box_prompts",
        ("box_prompts: is nested more than 32 levels deep", "at most 32 levels"),
    ),
    Case(
        "image_empty_string",
        SEG,
        {"image": "   ", "prompt": "shoe"},
        "image",
        ("image: is empty; give an image", SOURCES),
    ),
    Case(
        "image_wrong_type",
        SEG,
        {"image": 42, "prompt": "shoe"},
        "image",
        ("image: got int, which is not an image", SOURCES),
    ),
    Case(
        "image_url_missing_local_file_in_arguments",
        ANY,
        {"endpoint_id": "fal-ai/sam-3/image", "arguments": {"image_url": "/tmp/no-such-shoe.png", "prompt": "shoe"}},
        "image_url",
        ("image_url: the file '/tmp/no-such-shoe.png' does not exist",),
    ),
    Case(
        "image_and_image_url_both",
        SEG,
        {"image": IMG, "arguments": {"image_url": "https://example.com/a.png"}, "prompt": "shoe"},
        "image",
        ("image: give either image or image_url, not both",),
    ),
    # ---- unreadable or non-image content
    Case(
        "text_saved_as_png",
        SEG,
        {"image": File("text_png"), "prompt": "shoe"},
        "image",
        ("is not an accepted image: its content looks like text", IMAGE_FORMATS),
    ),
    Case(
        "html_saved_as_jpg",
        RLE,
        {"image": File("html_jpg"), "prompt": "shoe"},
        "image",
        ("its content looks like HTML or XML text", IMAGE_FORMATS),
    ),
    Case(
        "truncated_png",
        SEG,
        {"image": File("truncated_png"), "prompt": "shoe"},
        "image",
        ("is truncated or corrupt", "export or copy it again"),
    ),
    Case(
        "empty_file",
        SEG,
        {"image": File("empty_png"), "prompt": "shoe"},
        "image",
        ("is empty; it must contain an image", IMAGE_FORMATS),
    ),
    Case(
        "tiff_image",
        EMBED,
        {"image": File("tiff"), "output_path": File("out_dir")},
        "image",
        ("is a TIFF image, which fal does not accept", IMAGE_FORMATS),
    ),
    Case(
        "data_uri_bad_base64",
        SEG,
        {"image": "data:image/png;base64,@@not-base64@@", "prompt": "shoe"},
        "image",
        ("image: is a data: URI whose payload is not valid base64",),
    ),
    Case(
        "data_uri_not_base64",
        SEG,
        {"image": "data:image/png,rawbytes", "prompt": "shoe"},
        "image",
        ("image: is a data: URI that is not base64-encoded", "data:<media type>;base64,<payload>"),
    ),
    Case(
        "data_uri_text_payload",
        RLE,
        {"image": "data:image/png;base64,aGVsbG8gd29ybGQ=", "prompt": "shoe"},
        "image",
        ("its content looks like text", IMAGE_FORMATS),
    ),
    # ---- huge images
    Case(
        "decompression_bomb_png",
        SEG,
        {"image": File("bomb_png"), "prompt": "shoe"},
        "image",
        ("is too large", "decompression bomb", "The limit here is 67,108,864 pixels"),
    ),
    Case(
        "over_pixel_limit_png",
        ops.Reconstruct3DObjectsOperator,
        {"image": File("huge_png"), "prompt": "chair"},
        "image",
        ("is 9000x9000 = 81,000,000 pixels, more than the limit of 67,108,864 pixels",),
    ),
    # ---- out-of-range and wrongly typed parameters
    Case(
        "max_masks_0",
        SEG,
        {"image": IMG, "prompt": "shoe", "max_masks": 0},
        "max_masks",
        ("max_masks: Input should be greater than or equal to 1 (got 0)",),
    ),
    Case(
        "max_masks_33",
        RLE,
        {"image": IMG, "prompt": "shoe", "max_masks": 33},
        "max_masks",
        ("max_masks: Input should be less than or equal to 32 (got 33)",),
    ),
    Case(
        "max_masks_many",
        SEG,
        {"image": IMG, "prompt": "shoe", "max_masks": "many"},
        "max_masks",
        ("max_masks: Input should be a valid integer", "(got 'many')"),
    ),
    Case(
        "output_format_gif",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_format": "gif"},
        "output_format",
        ("output_format: Input should be 'jpeg', 'png' or 'webp' (got 'gif')",),
    ),
    Case(
        "apply_mask_maybe",
        SEG,
        {"image": IMG, "prompt": "shoe", "apply_mask": "maybe"},
        "apply_mask",
        ("apply_mask: Input should be a valid boolean", "(got 'maybe')"),
    ),
    Case(
        "prompt_not_a_string",
        SEG,
        {"image": IMG, "prompt": 7},
        "prompt",
        ("prompt: Input should be a valid string (got 7)",),
    ),
    Case(
        "threshold_negative",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO_URL, "detection_threshold": -0.1},
        "detection_threshold",
        ("detection_threshold: Input should be greater than or equal to 0",),
    ),
    Case(
        "threshold_above_1",
        ops.SegmentVideoObjectsOperator,
        {"video_url": VIDEO_URL, "prompt": "person", "detection_threshold": 1.5},
        "detection_threshold",
        ("detection_threshold: Input should be less than or equal to 1",),
    ),
    Case(
        "threshold_3d_below_0_1",
        ops.Reconstruct3DObjectsOperator,
        {"image": IMG, "prompt": "chair", "detection_threshold": 0.05},
        "detection_threshold",
        ("detection_threshold: Input should be greater than or equal to 0.1",),
    ),
    Case(
        "video_output_type_avi",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO_URL, "video_output_type": "AVI"},
        "video_output_type",
        ("video_output_type: Input should be 'X264 (.mp4)' or 'VP9 (.webm)'",),
    ),
    Case(
        "max_num_objects_0_v31",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO_URL, "version": "3.1", "max_num_objects": 0},
        "max_num_objects",
        ("max_num_objects: Input should be greater than or equal to 1",),
    ),
    Case(
        "focal_length_negative",
        ops.Align3DOperator,
        {"image": IMG, "body_mesh_url": MESH_URL, "focal_length": -5},
        "focal_length",
        ("focal_length: Input should be greater than 0",),
    ),
    # ---- prompts
    Case(
        "label_2",
        SEG,
        {"image": IMG, "point_prompts": [{"x": 5, "y": 5, "label": 2}]},
        "point_prompts[0].label",
        ("point_prompts[0].label: Input should be 0 or 1",),
    ),
    Case(
        "label_boolean",
        RLE,
        {"image": IMG, "point_prompts": [{"x": 5, "y": 5, "label": True}]},
        "point_prompts[0].label",
        ("point_prompts[0].label", "1 (foreground) or 0 (background), not a boolean"),
    ),
    Case(
        "point_negative",
        SEG,
        {"image": IMG, "point_prompts": [{"x": -1, "y": 5}]},
        "point_prompts[0].x",
        ("point_prompts[0].x: Input should be greater than or equal to 0",),
    ),
    Case(
        "point_prompts_not_a_list",
        SEG,
        {"image": IMG, "point_prompts": {"x": 1, "y": 2}},
        "point_prompts",
        ("point_prompts: Input should be a valid list",),
    ),
    Case(
        "box_x_reversed",
        SEG,
        {"image": IMG, "box_prompts": box(x_min=50, x_max=5)},
        "box_prompts[0].x_max",
        ("box_prompts[0].x_max: x_max (5) must be greater than x_min (50); corners are (min, max)",),
    ),
    Case(
        "box_y_equal",
        ops.Reconstruct3DObjectsOperator,
        {"image": IMG, "box_prompts": box(y_min=40, y_max=40)},
        "box_prompts[0].y_max",
        ("box_prompts[0].y_max: y_max (40) must be greater than y_min (40)",),
    ),
    Case(
        "box_negative",
        RLE,
        {"image": IMG, "box_prompts": box(x_min=-3)},
        "box_prompts[0].x_min",
        ("box_prompts[0].x_min: Input should be greater than or equal to 0",),
    ),
    Case(
        "box_float_corner",
        SEG,
        {"image": IMG, "box_prompts": box(x_max=40.5)},
        "box_prompts[0].x_max",
        ("box_prompts[0].x_max: Input should be a valid integer, got a number with a fractional part",),
    ),
    Case(
        "frame_index_without_mask",
        ops.SegmentVideoRleOperator,
        {"video_url": VIDEO_URL, "frame_index": 3},
        "frame_index",
        ("frame_index: names the frame of mask_url; give mask_url too",),
    ),
    Case(
        "sync_mode_without_output_path",
        SEG,
        {"image": IMG, "prompt": "shoe", "sync_mode": True},
        "sync_mode",
        ("sync_mode: returns masks inline as data URIs", "set output_path"),
    ),
    # ---- misspelt and missing fields
    Case(
        "misspelt_max_mask",
        SEG,
        {"image": IMG, "prompt": "shoe", "arguments": {"max_mask": 4}},
        "max_mask",
        ("max_mask: unknown field; did you mean 'max_masks'?", "Known fields: apply_mask, box_prompts"),
    ),
    Case(
        "misspelt_promt_queue_operator",
        ANY,
        {"endpoint_id": "fal-ai/sam-3/image", "arguments": {"image_url": "https://e.com/a.png", "promt": "shoe"}},
        "promt",
        ("promt: unknown field; did you mean 'prompt'?",),
    ),
    Case(
        "misspelt_nested_lable",
        SEG,
        {"image": IMG, "point_prompts": [{"x": 1, "y": 1, "lable": 1}]},
        "point_prompts[0].lable",
        ("point_prompts[0].lable: unknown field; did you mean 'label'?",),
    ),
    Case(
        "misspelt_typed_keyword",
        SEG,
        {"image": IMG, "prompt": "shoe", "max_mask": 4},
        "max_mask",
        ("max_mask",),
        error=TypeError,
        at="init",
    ),
    Case(
        "video_url_missing",
        ops.SegmentVideoRleOperator,
        {"prompt": "person"},
        "video_url",
        ("video_url: Field required",),
    ),
    Case(
        "body_mesh_url_missing",
        ops.Align3DOperator,
        {"image": IMG},
        "body_mesh_url",
        ("body_mesh_url: Field required",),
    ),
    Case(
        "video_url_local_path",
        ops.SegmentVideoOperator,
        {"video_url": "/data/clip.mp4"},
        "video_url",
        ("video_url: the file '/data/clip.mp4' does not exist", "give the path of an existing file"),
    ),
    Case(
        "arguments_not_a_mapping",
        SEG,
        {"image": IMG, "arguments": "max_masks=3"},
        "arguments",
        ("arguments: must be a mapping of field names to values",),
    ),
    Case(
        "queue_arguments_not_json",
        ANY,
        {"endpoint_id": "fal-ai/flux/dev", "arguments": {"seed": {1, 2}}},
        "arguments",
        ("arguments: must be JSON-serializable",),
    ),
    # ---- unknown endpoints and versions
    Case(
        "endpoint_id_typo",
        ANY,
        {"endpoint_id": "fal-ai/sam-3/imag", "arguments": {"prompt": "x"}},
        "endpoint_id",
        (
            "endpoint_id: 'fal-ai/sam-3/imag' is not a SAM 3 endpoint; did you mean 'fal-ai/sam-3/image'?",
            "allowed: fal-ai/sam-3/image, fal-ai/sam-3/image-rle",
        ),
    ),
    Case(
        "endpoint_id_sam31_unknown_path",
        ANY,
        {"endpoint_id": "fal-ai/sam-3-1/image/embed", "arguments": {}},
        "endpoint_id",
        ("endpoint_id: 'fal-ai/sam-3-1/image/embed' is not a SAM 3 endpoint", "allowed: "),
    ),
    Case(
        "endpoint_id_is_a_url",
        ANY,
        {"endpoint_id": "https://queue.fal.run/fal-ai/sam-3/image", "arguments": {}},
        "endpoint_id",
        ("is not a fal endpoint id", "allowed: 'owner/app' or 'owner/app/path'"),
    ),
    Case("endpoint_id_missing", ANY, {"arguments": {"prompt": "x"}}, "endpoint_id", ("endpoint_id: is required",)),
    Case(
        "version_4",
        SEG,
        {"image": IMG, "prompt": "shoe", "version": "4"},
        "version",
        ("version: '4': SegmentImageOperator ('image') has no such SAM version", "allowed: '3', '3.1'"),
    ),
    Case(
        "embed_has_no_sam31",
        EMBED,
        {"image": IMG, "version": "3.1", "output_path": File("out_dir")},
        "version",
        ("version: '3.1': EmbedImageOperator ('embed') has no such SAM version", "allowed: '3'"),
    ),
    # ---- connection
    Case(
        "no_connection_and_no_fal_key",
        SEG,
        {"image": IMG, "prompt": "shoe", "fal_conn_id": "fal_missing"},
        "FAL_KEY",
        (
            "no fal API key found: connection 'fal_missing' does not exist",
            "FAL_KEY",
            "Add a 'fal' connection with the key as its password",
        ),
        error=FalAuthenticationError,
        unset_key=True,
    ),
    # ---- output_path
    Case(
        "embed_without_output_path",
        EMBED,
        {"image": IMG},
        "output_path",
        ("output_path: is required by EmbedImageOperator",),
    ),
    Case(
        "output_path_relative",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_path": "out/masks"},
        "output_path",
        ("output_path: 'out/masks' is relative", PATH_KINDS),
    ),
    Case(
        "output_path_empty",
        RLE,
        {"image": IMG, "prompt": "shoe", "output_path": ""},
        "output_path",
        ("output_path: got ''", PATH_KINDS),
    ),
    Case(
        "output_path_number",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_path": 42},
        "output_path",
        ("output_path: got 42", PATH_KINDS),
    ),
    Case(
        "output_path_unknown_scheme",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_path": "nosuch://bucket/x"},
        "output_path",
        ("output_path: 'nosuch://bucket/x' cannot be used", "Unsupported filesystem", PATH_KINDS),
    ),
    Case(
        "output_path_under_a_file",
        EMBED,
        {"image": IMG, "output_path": File("under_a_file")},
        "output_path",
        ("output_path: ", "is a file, so", PATH_KINDS),
    ),
    # ---- queue options
    Case(
        "priority_high",
        SEG,
        {"image": IMG, "prompt": "shoe", "priority": "high"},
        "priority",
        ("priority: 'high' is not a queue priority (allowed: normal, low)",),
    ),
    Case(
        "start_timeout_half_second",
        SEG,
        {"image": IMG, "prompt": "shoe", "start_timeout": 0.5},
        "start_timeout",
        ("start_timeout: 0.5 is not a start deadline", "allowed: a number of seconds above 1"),
    ),
    Case(
        "start_timeout_string",
        RLE,
        {"image": IMG, "prompt": "shoe", "start_timeout": "soon"},
        "start_timeout",
        ("start_timeout: 'soon' is not a start deadline", "allowed: a number of seconds above 1"),
    ),
    Case(
        "timeout_zero",
        SEG,
        {"image": IMG, "prompt": "shoe", "timeout": timedelta(0)},
        "timeout",
        ("timeout: 0.0 must be a positive duration", "allowed: a number of seconds"),
    ),
    Case(
        "timeout_negative",
        ANY,
        {"endpoint_id": "fal-ai/sam-3/image", "arguments": {"image_url": "https://e.com/a.png"}, "timeout": -5},
        "timeout",
        ("timeout: -5.0 must be a positive duration",),
    ),
    Case(
        "timeout_string",
        SEG,
        {"image": IMG, "prompt": "shoe", "timeout": "1h"},
        "timeout",
        ("timeout: '1h' is not a duration", "allowed: a number of seconds or a timedelta"),
        at="init",
    ),
    Case(
        "poll_interval_too_fast",
        SEG,
        {"image": IMG, "prompt": "shoe", "poll_interval": 0.01},
        "poll_interval",
        ("poll_interval: 0.01 would poll fal too fast", "at least 0.2"),
    ),
    Case(
        "max_poll_below_poll",
        SEG,
        {"image": IMG, "prompt": "shoe", "poll_interval": 5, "max_poll_interval": 1},
        "max_poll_interval",
        ("max_poll_interval: 1 is below poll_interval 5",),
    ),
    Case(
        "webhook_not_a_url",
        SEG,
        {"image": IMG, "prompt": "shoe", "webhook_url": "hooks.example.com/fal"},
        "webhook_url",
        ("webhook_url: 'hooks.example.com/fal' is not a URL fal can call", "allowed: an http(s) URL"),
    ),
    # ---- numbers that would disable a check, booleans posing as numbers, sizes the image rules out (issue 13)
    Case(
        "max_masks_boolean",
        SEG,
        {"image": IMG, "prompt": "shoe", "max_masks": True},
        "max_masks",
        ("max_masks: True is a boolean, which this field does not take",),
    ),
    Case(
        "seed_boolean",
        ops.Reconstruct3DObjectsOperator,
        {"image": IMG, "prompt": "chair", "seed": True},
        "seed",
        ("seed: True is a boolean",),
    ),
    Case(
        "threshold_nan",
        ops.SegmentVideoOperator,
        {"video_url": VIDEO_URL, "detection_threshold": float("nan")},
        "detection_threshold",
        ("detection_threshold: Input should be a finite number",),
    ),
    Case(
        "threshold_nan_string",
        ops.SegmentVideoRleOperator,
        {"video_url": VIDEO_URL, "detection_threshold": "nan"},
        "detection_threshold",
        ("detection_threshold: Input should be a finite number (got 'nan')",),
    ),
    Case(
        "focal_length_infinite",
        ops.Align3DOperator,
        {"image": IMG, "body_mesh_url": MESH_URL, "focal_length": float("inf")},
        "focal_length",
        ("focal_length: Input should be a finite number",),
    ),
    Case(
        "start_timeout_infinite",
        SEG,
        {"image": IMG, "prompt": "shoe", "start_timeout": float("inf")},
        "start_timeout",
        ("start_timeout: inf is not a start deadline", "at most a week"),
    ),
    Case(
        "poll_interval_infinite",
        RLE,
        {"image": IMG, "prompt": "shoe", "poll_interval": float("inf")},
        "poll_interval",
        ("poll_interval: inf is not a finite number",),
    ),
    Case(
        "timeout_nan",
        SEG,
        {"image": IMG, "prompt": "shoe", "timeout": float("nan")},
        "timeout",
        ("timeout: nan is not a finite duration",),
        at="init",
    ),
    Case(
        "timeout_infinite",
        RLE,
        {"image": IMG, "prompt": "shoe", "timeout": float("inf")},
        "timeout",
        ("timeout: inf is not a finite duration",),
        at="init",
    ),
    Case(
        "point_outside_the_image",
        SEG,
        {"image": IMG, "point_prompts": [{"x": 96, "y": 5}]},
        "point_prompts[0].x",
        ("point_prompts[0].x: 96 is outside the image: the image is 96x64 pixels", "allowed: 0 to 95"),
    ),
    Case(
        "box_outside_the_image",
        RLE,
        {"image": IMG, "box_prompts": box(y_max=65)},
        "box_prompts[0].y_max",
        ("box_prompts[0].y_max: 65 is outside the image", "allowed: 0 to 64"),
    ),
    Case(
        "point_x_ten_to_the_twelfth",
        SEG,
        {"image": IMG, "point_prompts": [{"x": 10**12, "y": 5}]},
        "point_prompts[0].x",
        ("point_prompts[0].x: Input should be less than or equal to 100000",),
    ),
    Case(
        "prompt_over_1000_characters",
        SEG,
        {"image": IMG, "prompt": "shoe " * 201},
        "prompt",
        ("prompt: String should have at most 1000 characters",),
    ),
    Case(
        "output_path_in_sys",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_path": "/sys/sam3-masks"},
        "output_path",
        ("output_path: '/sys/sam3-masks' cannot be created", "nothing was sent to fal"),
    ),
    Case(
        "output_path_is_a_file",
        RLE,
        {"image": IMG, "prompt": "shoe", "output_path": File("a_file")},
        "output_path",
        ("is a file, not a directory", PATH_KINDS),
    ),
    # ---- templates
    Case(
        "template_undefined",
        SEG,
        {"image": "{{ params.nope.deeper }}", "prompt": "shoe"},
        "image",
        ("image: '{{ params.nope.deeper }}' failed to render", "UndefinedError", "has no attribute 'nope'"),
    ),
    Case(
        "template_syntax_error",
        SEG,
        {"image": IMG, "prompt": "{{ params.prompt ", "max_masks": 2},
        "prompt",
        ("prompt: ", "failed to render", "TemplateSyntaxError"),
    ),
    Case(
        "template_renders_out_of_range",
        RLE,
        {"image": IMG, "prompt": "shoe", "max_masks": "{{ params.n * 20 }}"},
        "max_masks",
        ("max_masks: Input should be less than or equal to 32 (got '40')",),
    ),
    Case(
        "template_renders_bad_version",
        SEG,
        {"image": IMG, "prompt": "shoe", "version": "{{ params.n * 2 }}"},
        "version",
        ("version: '4': SegmentImageOperator", "allowed: '3', '3.1'"),
    ),
    Case(
        "template_renders_empty_output_path",
        SEG,
        {"image": IMG, "prompt": "shoe", "output_path": "{{ params.get('out', '') }}"},
        "output_path",
        ("output_path: got ''", PATH_KINDS),
    ),
]
"""Every single-request case. ``test_every_case_is_distinct`` keeps the table honest."""

BATCH = Sam3BatchOperator
OUT = File("out_dir")
BATCH_CASES: list[Case] = [
    Case("batch_empty_list", BATCH, {"images": [], "output_path": OUT}, "images", ("is empty", "at least one image")),
    Case(
        "batch_folder_without_images",
        BATCH,
        {"images": File("directory"), "output_path": OUT},
        "images",
        ("matches no image files", ".png"),
    ),
    Case(
        "batch_images_text_3000_deep",
        BATCH,
        {"images": "[" * 3000 + "'/data/a.png'" + "]" * 3000, "output_path": OUT},
        "images",
        ("images: is nested more than 32 levels deep", "at most 32 levels"),
    ),
    Case(
        "batch_arguments_nested_40_deep",
        BATCH,
        {"images": [IMG], "output_path": OUT, "arguments": {"prompt": "shoe", "point_prompts": nested(40, 1)}},
        "arguments",
        ("arguments: is nested more than 32 levels deep", "at most 32 levels"),
    ),
    Case(
        "batch_relative_path",
        BATCH,
        {"images": ["photos/a.png"], "output_path": OUT},
        "images[0]",
        ("relative path", "absolute path or a URL"),
    ),
    Case(
        "batch_bytes_item",
        BATCH,
        {"images": [b"\x89PNG"], "output_path": OUT},
        "images[0]",
        ("bytes and PIL images cannot be batched", "save them to storage"),
    ),
    Case(
        "batch_item_without_image",
        BATCH,
        {"images": [{"prompt": "shoe"}], "output_path": OUT},
        "images[0]",
        ("must name its image once", "'image'"),
    ),
    Case(
        "batch_one_unreadable_image",
        BATCH,
        {"images": [IMG, File("text_png")], "output_path": OUT},
        "images",
        ("1 of 2 images cannot be sent, so nothing was submitted", "notes.png", "skip_invalid=True"),
    ),
    Case(
        "batch_per_image_field_out_of_range",
        BATCH,
        {"images": [{"image": IMG, "max_masks": 99}], "output_path": OUT},
        "images",
        ("max_masks", "32"),
    ),
    Case(
        "batch_shared_field_typo",
        BATCH,
        {"images": [IMG], "arguments": {"promt": "shoe"}, "output_path": OUT},
        "arguments.promt",
        ("every image was refused for this field of the batch's shared arguments", "did you mean 'prompt'"),
    ),
    Case(
        "batch_image_in_arguments",
        BATCH,
        {"images": [IMG], "arguments": {"image_url": "https://x/y.png"}, "output_path": OUT},
        "arguments.image_url",
        ("images parameter",),
    ),
    Case(
        "batch_video_kind",
        BATCH,
        {"images": [IMG], "kind": "video", "output_path": OUT},
        "kind",
        ("cannot be batched", "image, image-rle, embed"),
    ),
    Case(
        "batch_no_output_path",
        BATCH,
        {"images": [IMG], "output_path": None},
        "output_path",
        ("is required for a batch", "s3://"),
    ),
    Case(
        "batch_zero_in_flight",
        BATCH,
        {"images": [IMG], "output_path": OUT, "max_in_flight": 0},
        "max_in_flight",
        ("at least 1",),
    ),
    Case(
        "batch_unknown_failure_policy",
        BATCH,
        {"images": [IMG], "output_path": OUT, "on_image_failure": "ignore"},
        "on_image_failure",
        ("'ignore' is not a policy", "fail, report"),
    ),
    Case(
        "batch_polls_too_fast",
        BATCH,
        {"images": [IMG], "output_path": OUT, "poll_interval": 0.01},
        "poll_interval",
        ("would poll fal too fast", "at least 0.2"),
    ),
    Case(
        "batch_cost_not_a_number",
        BATCH,
        {"images": [IMG], "output_path": OUT, "max_cost_usd": "lots"},
        "max_cost_usd",
        ("is not a number", "a finite number at least 0"),
    ),
    Case(
        "batch_above_cost_ceiling",
        BATCH,
        {"images": [IMG, "https://example.com/a.png"], "output_path": OUT, "max_cost_usd": 0.001, "kind": "image-rle"},
        "max_cost_usd",
        ("estimated cost", "above max_cost_usd=$0.00", "nothing was submitted"),
    ),
]
"""Batch-operator cases, run by ``test_bad_input_fails_before_submission`` like the others."""

ALL_CASES = CASES + BATCH_CASES
PARAMS = {"n": 2, "prompt": "shoe"}


# ------------------------------------------------------------------------------------------------ files


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` that takes a few kilobytes (all black)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer, parts, block = zlib.compressobj(9), [], 256
    for start in range(0, height, block):
        parts.append(packer.compress(row * min(block, height - start)))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, str]:
    from PIL import Image, ImageDraw

    root = tmp_path_factory.mktemp("bad-inputs")
    picture = io.BytesIO()
    image = Image.new("RGB", (96, 64), (20, 30, 40))
    ImageDraw.Draw(image).rectangle([30, 16, 61, 47], fill=(240, 220, 60))
    image.save(picture, format="PNG")
    good = picture.getvalue()
    tiff = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(tiff, format="TIFF")
    contents = {
        "photo": ("photo.png", good),
        "text_png": ("notes.png", b"these are my notes, not a picture\n"),
        "html_jpg": ("page.jpg", b"<!doctype html><html><body>Access denied</body></html>"),
        "truncated_png": ("truncated.png", good[: len(good) // 2]),
        "empty_png": ("empty.png", b""),
        "tiff": ("scan.png", tiff.getvalue()),
        "bomb_png": ("bomb.png", huge_png(20000, 20000)),
        "huge_png": ("huge.png", huge_png(9000, 9000)),
        "a_file": ("a_file.txt", b"x"),
    }
    paths = {}
    for key, (name, data) in contents.items():
        (root / name).write_bytes(data)
        paths[key] = str(root / name)
    assert len(contents["bomb_png"][1]) < 200_000  # small bytes, huge dimensions
    (root / "folder").mkdir()
    paths["directory"] = str(root / "folder")
    os.mkfifo(root / "camera.png")
    paths["fifo"] = str(root / "camera.png")
    (root / "zero.png").symlink_to("/dev/zero")
    paths["zero_link"] = str(root / "zero.png")
    with open(root / "sparse.png", "wb") as handle:  # 150 MB on paper, nothing on disk
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(150 * 1024 * 1024)
    paths["sparse_150mb"] = str(root / "sparse.png")
    paths["out_dir"] = str(root / "out")
    paths["under_a_file"] = str(root / "a_file.txt" / "out")
    return paths


def resolve(value: Any, files: dict[str, str]) -> Any:
    if isinstance(value, File):
        return files[value.name]
    if isinstance(value, dict):
        return {k: resolve(v, files) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, files) for v in value]
    return value


def no_queue_calls(emulator) -> bool:
    counters = emulator.counters()
    return (counters["submissions"]["total"], counters["status_calls"], counters["result_calls"]) == (0, 0, 0)


def check_message(case: Case, text: str) -> None:
    for expected in case.says:
        assert expected in text, f"{case.id}: {expected!r} not in {text!r}"


# ------------------------------------------------------------------------------------------------ every case


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.id for c in ALL_CASES])
def test_bad_input_fails_before_submission(case, bad_files, fal_emulator, monkeypatch):
    """render_template_fields() then execute(), as the task runner calls them; nothing reaches fal's queue."""
    from airflow.sdk.exceptions import AirflowFailException

    if case.unset_key:
        monkeypatch.delenv("FAL_KEY", raising=False)
    kwargs = resolve(case.kwargs, bad_files)
    if case.at == "init":
        with pytest.raises(case.error) as raised:
            case.operator(task_id="t", **kwargs)
        check_message(case, str(raised.value))
        assert no_queue_calls(fal_emulator)
        return

    operator = case.operator(task_id="t", **kwargs)
    context: dict[str, Any] = {"params": dict(PARAMS)}
    with pytest.raises((AirflowFailException, InputValidationError)) as raised:
        operator.render_template_fields(context)
        operator.execute(context)
    error = raised.value
    # execute() fails the task without retries (a retry would fail the same way); the cause is the specific error.
    cause = error.__cause__ if isinstance(error, AirflowFailException) else error
    assert isinstance(cause, case.error), f"{case.id}: {type(cause).__name__}: {cause}"
    if isinstance(cause, InputValidationError):
        assert cause.field == case.field or case.field in getattr(cause, "fields", ()), (cause.field, str(cause))
    check_message(case, str(error))
    if isinstance(error, AirflowFailException):
        assert "not retried" in str(error)
    assert no_queue_calls(fal_emulator), f"{case.id} reached fal's queue: {fal_emulator.counters()}"


def test_every_case_is_distinct():
    ids = [c.id for c in ALL_CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    keys = [(c.operator, json.dumps(c.kwargs, default=repr, sort_keys=True)) for c in ALL_CASES]
    assert len(keys) == len(set(keys))


# ------------------------------------------------------------------------------------------------ real task runs

DAG_CASES = {
    case.id: case
    for case in CASES
    if case.id
    in {
        "image_ftp_url",
        "text_saved_as_png",
        "decompression_bomb_png",
        "label_2",
        "box_x_reversed",
        "max_masks_many",
        "threshold_above_1",
        "misspelt_max_mask",
        "endpoint_id_typo",
        "embed_has_no_sam31",
        "no_connection_and_no_fal_key",
        "output_path_relative",
        "priority_high",
        "template_undefined",
        "template_renders_out_of_range",
        "point_outside_the_image",
        "output_path_in_sys",
    }
}
"""A representative subset, run as real tasks under dag.test(): one per family of the table."""

DAG_PARAMS = {**PARAMS, **{name: "" for name in ("photo", "text_png", "bomb_png", "out_dir")}}


def templated(value: Any) -> Any:
    """Files reach the DAG run as params (the DAG file is parsed before the test's temporary files exist)."""
    if isinstance(value, File):
        return "{{ params.%s }}" % value.name
    if isinstance(value, dict):
        return {k: templated(v) for k, v in value.items()}
    if isinstance(value, list):
        return [templated(v) for v in value]
    return value


def make_dag(case: Case):
    kwargs = templated(case.kwargs)

    @dag(dag_id=f"sam3_evidence_bad_input_{case.id}", schedule=None, params=DAG_PARAMS)
    def bad_input():
        # retries=2: a rejected input must still fail on its first try (a retry would fail the same way).
        case.operator(task_id="t", deferrable=True, retries=2, retry_delay=timedelta(0), **kwargs)

    return bad_input()


DAGS = {name: make_dag(case) for name, case in DAG_CASES.items()}


@pytest.mark.parametrize("name", sorted(DAG_CASES))
def test_bad_input_fails_the_task_under_dag_test(name, run_dag, bad_files, fal_emulator, capfd, monkeypatch):
    case = DAG_CASES[name]
    if case.unset_key:
        monkeypatch.delenv("FAL_KEY", raising=False)
    results = run_dag(DAGS[name], **{key: bad_files[key] for key in ("photo", "text_png", "bomb_png", "out_dir")})
    out, err = capfd.readouterr()
    log = out + err
    assert results["t"][0] == "failed", (results, log[-3000:])
    check_message(case, log)
    assert "not retried" in log
    assert "new_state=up_for_retry" not in log, "a rejected input was retried"
    assert no_queue_calls(fal_emulator), fal_emulator.counters()
