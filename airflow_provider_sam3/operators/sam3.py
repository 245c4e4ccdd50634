"""One typed operator per SAM 3 endpoint kind, all driven by the endpoint registry (``operators.sam3_base``).

Each operator takes the endpoint's input fields as keyword arguments, plus ``version`` and (for image endpoints)
``image``. Their signatures for type checkers and IDEs are in ``sam3.pyi``, generated from the registry's models:
``python -m airflow_provider_sam3.operators.stubs`` after changing a model or the registry.
"""

from __future__ import annotations

from airflow_provider_sam3.operators.sam3_base import Sam3Operator

__all__ = [
    "Align3DOperator",
    "EmbedImageOperator",
    "Reconstruct3DBodyOperator",
    "Reconstruct3DObjectsOperator",
    "Sam3Operator",
    "SegmentImageOperator",
    "SegmentImageRleOperator",
    "SegmentVideoObjectsOperator",
    "SegmentVideoOperator",
    "SegmentVideoRleOperator",
]


class SegmentImageOperator(Sam3Operator):
    """Segment an image by text, points or boxes; masks as images (``fal-ai/sam-3/image``)."""

    kind = "image"


class SegmentImageRleOperator(Sam3Operator):
    """Segment an image; masks as run-length encodings (``fal-ai/sam-3/image-rle``)."""

    kind = "image-rle"


class EmbedImageOperator(Sam3Operator):
    """Compute a SAM 3 image embedding (``fal-ai/sam-3/image/embed``); the bytes go to ``output_path``."""

    kind = "embed"
    requires_output_path = True


class SegmentVideoOperator(Sam3Operator):
    """Track prompted objects through a video; a segmented video file (``fal-ai/sam-3/video``)."""

    kind = "video"


class SegmentVideoRleOperator(Sam3Operator):
    """Track prompted objects through a video; one RLE mask per frame (``fal-ai/sam-3/video-rle``)."""

    kind = "video-rle"


class SegmentVideoObjectsOperator(Sam3Operator):
    """Track every instance of one concept; per-frame, per-object RLE (``fal-ai/sam-3/video-rle-objects``)."""

    kind = "video-rle-objects"


class Reconstruct3DObjectsOperator(Sam3Operator):
    """Reconstruct prompted objects of an image in 3D (``fal-ai/sam-3/3d-objects``)."""

    kind = "3d-objects"


class Reconstruct3DBodyOperator(Sam3Operator):
    """Reconstruct the people in an image as meshes and keypoints (``fal-ai/sam-3/3d-body``)."""

    kind = "3d-body"


class Align3DOperator(Sam3Operator):
    """Align a body mesh (and an object mesh) to an image (``fal-ai/sam-3/3d-align``)."""

    kind = "3d-align"
