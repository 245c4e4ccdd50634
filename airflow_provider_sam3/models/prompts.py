"""Point and box prompts. Coordinates are absolute integer pixels of the input image or frame."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, NonNegativeInt, ValidationInfo, field_validator

from airflow_provider_sam3.models.base import EndpointInput

__all__ = [
    "BoxPrompt",
    "BoxPromptBase",
    "Label",
    "LowThreshold",
    "MAX_PIXEL_COORDINATE",
    "MAX_PROMPT_LENGTH",
    "PixelCoordinate",
    "PointPrompt",
    "PointPromptBase",
    "TextPrompt",
    "Threshold",
]


def _coerce_label(value: Any) -> Any:
    """fal's older schema used the strings "0"/"1"; accept both forms and always send an integer."""
    if isinstance(value, bool):
        raise ValueError("label must be 1 (foreground) or 0 (background), not a boolean")
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    return value


MAX_PIXEL_COORDINATE = 100_000
"""No image fal takes is this wide or tall: a coordinate beyond it is a mistake, refused before paying (when the
image is local its real size is checked too)."""
MAX_PROMPT_LENGTH = 1_000
"""Characters in a text prompt. SAM 3 prompts are short noun phrases; a longer text is a mistake (or a template
that rendered a whole document) and is refused before it is sent and paid."""

Label = Annotated[Literal[0, 1], BeforeValidator(_coerce_label)]
PixelCoordinate = Annotated[int, Field(ge=0, le=MAX_PIXEL_COORDINATE)]
TextPrompt = Annotated[str, Field(max_length=MAX_PROMPT_LENGTH)]
"""A text prompt, at most ``MAX_PROMPT_LENGTH`` characters."""


class PointPromptBase(EndpointInput):
    """A point on the object (label 1) or on the background (label 0)."""

    x: PixelCoordinate
    y: PixelCoordinate
    label: Label = 1
    object_id: int | None = None


class PointPrompt(PointPromptBase):
    """A point prompt that may name the video frame it refers to."""

    frame_index: NonNegativeInt | None = None


class BoxPromptBase(EndpointInput):
    """A box around an object, in pixel corners (x_min, y_min) to (x_max, y_max)."""

    x_min: PixelCoordinate
    y_min: PixelCoordinate
    x_max: PixelCoordinate
    y_max: PixelCoordinate
    object_id: int | None = None

    @field_validator("x_max", "y_max")
    @classmethod
    def _corners_ordered(cls, value: int, info: ValidationInfo) -> int:
        assert info.field_name is not None  # always set for a field validator
        axis = info.field_name[0]
        low = info.data.get(f"{axis}_min")
        if low is not None and value <= low:
            raise ValueError(f"{axis}_max ({value}) must be greater than {axis}_min ({low}); corners are (min, max)")
        return value


class BoxPrompt(BoxPromptBase):
    """A box prompt that may name the video frame it refers to."""

    frame_index: NonNegativeInt | None = None


Threshold = Annotated[float, Field(ge=0.1, le=1.0)]
"""A detection threshold as fal bounds it on ``/video`` (and SAM 3.1's) and ``/3d-objects``: 0.1 to 1."""
LowThreshold = Annotated[float, Field(ge=0.01, le=1.0)]
"""A detection threshold as fal bounds it on ``/video-rle`` and ``/video-rle-objects``: 0.01 to 1."""
