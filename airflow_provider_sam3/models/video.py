"""Inputs and outputs of the SAM 3 video endpoints: video, video-rle and video-rle-objects."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, ValidationInfo, field_validator, model_validator

from airflow_provider_sam3.models.base import EndpointInput, EndpointOutput, FileUrl
from airflow_provider_sam3.models.files import File
from airflow_provider_sam3.models.image import FalNumber, NormalizedBox
from airflow_provider_sam3.models.prompts import (
    BoxPrompt,
    BoxPromptBase,
    LowThreshold,
    PointPrompt,
    PointPromptBase,
    TextPrompt,
    Threshold,
)

__all__ = [
    "MAX_NUM_OBJECTS_LIMIT",
    "ObjectsFrame",
    "SegmentVideoInput",
    "SegmentVideoInputV31",
    "SegmentVideoObjectsInput",
    "SegmentVideoObjectsOutput",
    "SegmentVideoOutput",
    "SegmentVideoRleInput",
    "SegmentVideoRleInputV31",
    "SegmentVideoRleOutput",
    "TrackedObject",
    "VideoOutputType",
]

VideoOutputType = Literal["X264 (.mp4)", "VP9 (.webm)"]
MAX_NUM_OBJECTS_LIMIT = 128
"""fal's upper bound of SAM 3.1's ``max_num_objects`` (default 16)."""


class _MaxObjects(EndpointInput):
    """SAM 3.1's video endpoints cap the number of tracked objects."""

    max_num_objects: int = Field(default=16, ge=1, le=MAX_NUM_OBJECTS_LIMIT)


class SegmentVideoInput(EndpointInput):
    """Input of ``fal-ai/sam-3/video``: track prompted objects through a video (commas separate concepts)."""

    video_url: FileUrl
    prompt: TextPrompt = ""
    point_prompts: list[PointPromptBase] = Field(default_factory=list)
    box_prompts: list[BoxPromptBase] = Field(default_factory=list)
    apply_mask: bool = True
    detection_threshold: Threshold = 0.5
    video_output_type: VideoOutputType = "X264 (.mp4)"


class SegmentVideoInputV31(_MaxObjects, SegmentVideoInput):
    """Input of ``fal-ai/sam-3-1/video``: SAM 3.1 adds a cap on tracked objects."""


class SegmentVideoOutput(EndpointOutput):
    """Output of ``/video``: the segmented video file."""

    video: File
    boundingbox_frames_zip: File | None = None


class SegmentVideoRleInput(EndpointInput):
    """Input of ``fal-ai/sam-3/video-rle``: one merged mask per frame, as RLE."""

    video_url: FileUrl
    mask_url: FileUrl | None = None
    frame_index: NonNegativeInt | None = None
    prompt: TextPrompt = ""
    point_prompts: list[PointPrompt] = Field(default_factory=list)
    box_prompts: list[BoxPrompt] = Field(default_factory=list)
    apply_mask: bool = False
    boundingbox_zip: bool = False
    detection_threshold: LowThreshold = 0.5

    @field_validator("frame_index")
    @classmethod
    def _frame_index_needs_mask(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("mask_url") is None:
            raise ValueError("names the frame of mask_url; give mask_url too, or drop frame_index")
        return value


class SegmentVideoRleInputV31(_MaxObjects, SegmentVideoRleInput):
    """Input of ``fal-ai/sam-3-1/video-rle``: SAM 3.1 adds a cap on tracked objects."""


class SegmentVideoRleOutput(EndpointOutput):
    """Output of ``/video-rle``: fal declares a union; in practice the RLE branch, sometimes the video one."""

    rle: list[str | None] | str | None = None
    boxes: list[NormalizedBox | None] | None = None
    scores: list[FalNumber | None] | None = None
    video: File | None = None
    boundingbox_frames_zip: File | None = None

    @model_validator(mode="after")
    def _one_branch(self) -> SegmentVideoRleOutput:
        if self.rle is None and self.video is None:
            raise ValueError("video-rle output has neither 'rle' nor 'video'")
        return self

    @property
    def frame_rles(self) -> list[str]:
        """One RLE string per frame; a frame without a mask (``""`` or ``null``) is an empty string."""
        if self.rle is None:
            return []
        return [self.rle] if isinstance(self.rle, str) else [frame or "" for frame in self.rle]


class SegmentVideoObjectsInput(EndpointInput):
    """Input of ``fal-ai/sam-3/video-rle-objects``: one concept, every instance tracked separately."""

    video_url: FileUrl
    prompt: TextPrompt = ""
    detection_threshold: LowThreshold = 0.5


class TrackedObject(EndpointOutput):
    """One object in one frame."""

    track_id: int
    rle: str


class ObjectsFrame(EndpointOutput):
    """The objects seen in one frame; an object absent from the frame is omitted."""

    frame_index: int
    objects: list[TrackedObject] = Field(default_factory=list)


class SegmentVideoObjectsOutput(EndpointOutput):
    """Output of ``/video-rle-objects``: per-frame, per-object RLE with track ids and the frame size."""

    frames: list[ObjectsFrame]
    width: int
    height: int
    num_frames: int
