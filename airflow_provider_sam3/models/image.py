"""Inputs and outputs of the SAM 3 image endpoints: image, image-rle and image/embed."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from airflow_provider_sam3.models.base import EndpointInput, EndpointOutput, FileUrl
from airflow_provider_sam3.models.files import File, ImageFile
from airflow_provider_sam3.models.prompts import BoxPrompt, PointPrompt, TextPrompt

__all__ = [
    "EmbedImageInput",
    "EmbedImageOutput",
    "ExplicitPromptMixin",
    "FalNumber",
    "MaskMetadata",
    "NormalizedBox",
    "OutputFormat",
    "SegmentImageInput",
    "SegmentImageOutput",
    "SegmentImageRleOutput",
]

OutputFormat = Literal["jpeg", "png", "webp"]
FalNumber = float | bool
"""A number in fal's output. A boolean is kept as it came (pydantic's lax mode would read ``true`` as 1.0) so the
result builder refuses it with a note, as it does NaN (``guards.numbers``)."""
NormalizedBox = list[FalNumber]
"""An output box ``[cx, cy, w, h]`` in fractions of the image's width and height."""


class ExplicitPromptMixin(EndpointInput):
    """Always send ``prompt``: fal's server fills a missing one with its own default (``"wheel"`` for images).

    A user who gives only points or boxes gets ``prompt=""`` so fal does not also look for wheels; a user who
    gives nothing at all gets fal's documented default, written out so the request says what fal will do.
    """

    server_default_prompt: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _resolve_prompt(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("prompt") is None:
            data = dict(data)
            geometric = data.get("point_prompts") or data.get("box_prompts") or data.get("mask_urls")
            data["prompt"] = "" if geometric else cls.server_default_prompt
        return data


class SegmentImageInput(ExplicitPromptMixin):
    """Input of ``fal-ai/sam-3/image`` and ``fal-ai/sam-3/image-rle`` (and their SAM 3.1 twins)."""

    server_default_prompt: ClassVar[str] = "wheel"

    image_url: FileUrl
    prompt: TextPrompt
    point_prompts: list[PointPrompt] = Field(default_factory=list)
    box_prompts: list[BoxPrompt] = Field(default_factory=list)
    apply_mask: bool = True
    sync_mode: bool = False
    output_format: OutputFormat = "png"
    return_multiple_masks: bool = False
    max_masks: int = Field(default=3, ge=1, le=32)
    include_scores: bool = False
    include_boxes: bool = False


class MaskMetadata(EndpointOutput):
    """Per-mask metadata; fal's own example returns it empty (``{}``), so every key is optional."""

    index: int | None = None
    score: FalNumber | None = None
    box: NormalizedBox | None = None


class _MaskAnnotations(EndpointOutput):
    metadata: list[MaskMetadata] | None = None
    scores: list[FalNumber | None] | None = None
    boxes: list[NormalizedBox | None] | None = None


class SegmentImageOutput(_MaskAnnotations):
    """Output of ``/image``: mask images (at the input size), an optional preview, scores and boxes."""

    image: ImageFile | None = None
    masks: list[ImageFile]


class SegmentImageRleOutput(_MaskAnnotations):
    """Output of ``/image-rle``: one RLE string per mask (a bare string when there is one), or a file."""

    rle: str | list[str] | File
    boundingbox_frames_zip: File | None = None

    @property
    def rle_strings(self) -> list[str]:
        """The masks' RLE strings as a list, whatever shape fal used."""
        if isinstance(self.rle, str):
            return [self.rle]
        if isinstance(self.rle, list):
            return list(self.rle)
        raise TypeError(f"this result stores its RLE in a file ({self.rle.url}); download it to read the masks")


class EmbedImageInput(EndpointInput):
    """Input of ``fal-ai/sam-3/image/embed`` (SAM 3 Vision)."""

    image_url: FileUrl


class EmbedImageOutput(EndpointOutput):
    """Output of ``/image/embed``: an opaque base64 payload whose dtype and shape fal does not document."""

    embedding_b64: str
