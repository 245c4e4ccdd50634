"""Typed descriptions of every SAM 3 endpoint's input and output, and of the request reference."""

from airflow_provider_sam3.models.files import File, ImageFile
from airflow_provider_sam3.models.image import (
    EmbedImageInput,
    EmbedImageOutput,
    MaskMetadata,
    SegmentImageInput,
    SegmentImageOutput,
    SegmentImageRleOutput,
)
from airflow_provider_sam3.models.prompts import BoxPrompt, BoxPromptBase, PointPrompt, PointPromptBase
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.three_d import (
    Align3DInput,
    Align3DOutput,
    Reconstruct3DBodyInput,
    Reconstruct3DBodyOutput,
    Reconstruct3DObjectsInput,
    Reconstruct3DObjectsOutput,
)
from airflow_provider_sam3.models.video import (
    SegmentVideoInput,
    SegmentVideoInputV31,
    SegmentVideoObjectsInput,
    SegmentVideoObjectsOutput,
    SegmentVideoOutput,
    SegmentVideoRleInput,
    SegmentVideoRleOutput,
)

__all__ = [
    "Align3DInput",
    "Align3DOutput",
    "BoxPrompt",
    "BoxPromptBase",
    "EmbedImageInput",
    "EmbedImageOutput",
    "File",
    "ImageFile",
    "MaskMetadata",
    "PointPrompt",
    "PointPromptBase",
    "Reconstruct3DBodyInput",
    "Reconstruct3DBodyOutput",
    "Reconstruct3DObjectsInput",
    "Reconstruct3DObjectsOutput",
    "RequestReference",
    "SegmentImageInput",
    "SegmentImageOutput",
    "SegmentImageRleOutput",
    "SegmentVideoInput",
    "SegmentVideoInputV31",
    "SegmentVideoObjectsInput",
    "SegmentVideoObjectsOutput",
    "SegmentVideoOutput",
    "SegmentVideoRleInput",
    "SegmentVideoRleOutput",
]
