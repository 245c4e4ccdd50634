"""The endpoint registry's table: one row per fal endpoint of the SAM 3 family, and the input models' field names.

Data only, read by ``endpoints`` (which builds the ``Endpoint`` entries and checks the field names against the
models on first use). Importing it imports no model: DAG files import the registry on every parse.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["BillingUnit", "ENDPOINT_ROWS", "INPUT_FIELDS", "Kind", "PER_REQUEST", "PER_16_FRAMES"]

BillingUnit = Literal["request", "16 frames"]
Kind = Literal[
    "image", "image-rle", "embed", "video", "video-rle", "video-rle-objects", "3d-objects", "3d-body", "3d-align"
]
PER_REQUEST: BillingUnit = "request"
PER_16_FRAMES: BillingUnit = "16 frames"

# Input field names per input model, in the model's order (checked against the model on first use and by tests).
INPUT_FIELDS = {
    "image:SegmentImageInput": (
        "image_url",
        "prompt",
        "point_prompts",
        "box_prompts",
        "apply_mask",
        "sync_mode",
        "output_format",
        "return_multiple_masks",
        "max_masks",
        "include_scores",
        "include_boxes",
    ),
    "image:EmbedImageInput": ("image_url",),
    "video:SegmentVideoInput": (
        "video_url",
        "prompt",
        "point_prompts",
        "box_prompts",
        "apply_mask",
        "detection_threshold",
        "video_output_type",
    ),
    "video:SegmentVideoRleInput": (
        "video_url",
        "mask_url",
        "frame_index",
        "prompt",
        "point_prompts",
        "box_prompts",
        "apply_mask",
        "boundingbox_zip",
        "detection_threshold",
    ),
    "video:SegmentVideoObjectsInput": ("video_url", "prompt", "detection_threshold"),
    "three_d:Reconstruct3DObjectsInput": (
        "image_url",
        "mask_urls",
        "prompt",
        "point_prompts",
        "box_prompts",
        "detection_threshold",
        "seed",
        "pointmap_url",
        "export_textured_glb",
    ),
    "three_d:Reconstruct3DBodyInput": (
        "image_url",
        "mask_url",
        "export_meshes",
        "include_3d_keypoints",
        "include_mhr_params",
    ),
    "three_d:Align3DInput": ("image_url", "body_mesh_url", "body_mask_url", "object_mesh_url", "focal_length"),
}
# SAM 3.1's video endpoints add a cap on tracked objects to SAM 3's fields.
INPUT_FIELDS["video:SegmentVideoInputV31"] = (*INPUT_FIELDS["video:SegmentVideoInput"], "max_num_objects")
INPUT_FIELDS["video:SegmentVideoRleInputV31"] = (*INPUT_FIELDS["video:SegmentVideoRleInput"], "max_num_objects")


# endpoint id, kind, title, input model, output model, price (USD), billing unit. Prices are fal's published ones
# (its model pages); two come from a third party where fal's page shows none (sam-3/image-rle, sam-3-1/image: the
# same apps' published prices); None where nothing is known. tests/fixtures/fal_published_schemas.json names the
# source of each, and tests/unit/models/test_schema_drift.py checks this table against it.
ENDPOINT_ROWS: list[tuple[str, Kind, str, str, str, float | None, BillingUnit | None]] = [
    (
        "fal-ai/sam-3/image",
        "image",
        "SAM 3 image segmentation",
        "image:SegmentImageInput",
        "image:SegmentImageOutput",
        0.005,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3/image-rle",
        "image-rle",
        "SAM 3 RLE",
        "image:SegmentImageInput",
        "image:SegmentImageRleOutput",
        0.005,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3/image/embed",
        "embed",
        "SAM 3 Vision (embeddings)",
        "image:EmbedImageInput",
        "image:EmbedImageOutput",
        0.005,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3/video",
        "video",
        "SAM 3 video",
        "video:SegmentVideoInput",
        "video:SegmentVideoOutput",
        0.005,
        PER_16_FRAMES,
    ),
    (
        "fal-ai/sam-3/video-rle",
        "video-rle",
        "SAM 3 video RLE",
        "video:SegmentVideoRleInput",
        "video:SegmentVideoRleOutput",
        0.005,
        PER_16_FRAMES,
    ),
    (
        "fal-ai/sam-3/video-rle-objects",
        "video-rle-objects",
        "SAM 3 video RLE per object",
        "video:SegmentVideoObjectsInput",
        "video:SegmentVideoObjectsOutput",
        None,
        None,
    ),
    (
        "fal-ai/sam-3/3d-objects",
        "3d-objects",
        "SAM 3 3D Objects",
        "three_d:Reconstruct3DObjectsInput",
        "three_d:Reconstruct3DObjectsOutput",
        0.02,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3/3d-body",
        "3d-body",
        "SAM 3 3D Body",
        "three_d:Reconstruct3DBodyInput",
        "three_d:Reconstruct3DBodyOutput",
        0.02,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3/3d-align",
        "3d-align",
        "SAM 3 3D align",
        "three_d:Align3DInput",
        "three_d:Align3DOutput",
        0.02,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3-1/image",
        "image",
        "SAM 3.1 image segmentation",
        "image:SegmentImageInput",
        "image:SegmentImageOutput",
        0.01,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3-1/image-rle",
        "image-rle",
        "SAM 3.1 RLE",
        "image:SegmentImageInput",
        "image:SegmentImageRleOutput",
        0.01,
        PER_REQUEST,
    ),
    (
        "fal-ai/sam-3-1/video",
        "video",
        "SAM 3.1 video",
        "video:SegmentVideoInputV31",
        "video:SegmentVideoOutput",
        0.01,
        PER_16_FRAMES,
    ),
    (
        "fal-ai/sam-3-1/video-rle",
        "video-rle",
        "SAM 3.1 video RLE",
        "video:SegmentVideoRleInputV31",
        "video:SegmentVideoRleOutput",
        None,
        None,
    ),
]
