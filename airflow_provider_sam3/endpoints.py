"""The endpoint registry: endpoint id -> input model, output model, price and billing unit.

This is the one place an endpoint is described. Operators, the emulator, cost estimates, docs and tests read it;
adding a SAM version is a few entries here.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from airflow_provider_sam3 import models as m
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.base import EndpointInput, EndpointOutput

BillingUnit = Literal["request", "16 frames"]
Kind = Literal[
    "image", "image-rle", "embed", "video", "video-rle", "video-rle-objects", "3d-objects", "3d-body", "3d-align"
]
FRAMES_PER_VIDEO_UNIT = 16


@dataclass(frozen=True)
class Endpoint:
    """One fal endpoint of the SAM 3 family."""

    endpoint_id: str
    kind: Kind
    version: str
    title: str
    input_model: type[EndpointInput]
    output_model: type[EndpointOutput]
    price_usd: float | None
    billing_unit: BillingUnit | None

    @property
    def app_id(self) -> str:
        """Owner and app (``fal-ai/sam-3``): the part of the path fal's status, result and cancel URLs keep."""
        return "/".join(self.endpoint_id.split("/")[:2])

    @property
    def takes_image(self) -> bool:
        return "image_url" in self.input_model.model_fields

    def validate_input(self, arguments: Mapping[str, Any]) -> EndpointInput:
        """Build the request model, or raise ``InputValidationError`` naming each bad field. Nothing is sent."""
        if not isinstance(arguments, Mapping):
            raise InputValidationError("arguments", f"must be a mapping of field names to values, not {type(arguments).__name__}")
        try:
            return self.input_model.model_validate(dict(arguments))
        except ValidationError as error:
            details = [_with_suggestion(e, self.input_model) for e in error.errors(include_url=False)]
            raise InputValidationError.from_errors(self.endpoint_id, details) from None

    def parse_output(self, data: Mapping[str, Any]) -> EndpointOutput:
        """Parse fal's result body with this endpoint's output model."""
        return self.output_model.model_validate(data)

    def estimate_cost(self, *, requests: int = 1, frames: int | None = None) -> float | None:
        """What fal would charge, in USD; ``None`` when fal has not published a price (or frames are unknown)."""
        if self.price_usd is None:
            return None
        if self.billing_unit == "16 frames":
            if frames is None:
                return None
            return round(self.price_usd * math.ceil(frames / FRAMES_PER_VIDEO_UNIT) * requests, 6)
        return round(self.price_usd * requests, 6)


def _with_suggestion(error: dict[str, Any], model: type[EndpointInput]) -> dict[str, Any]:
    if error.get("type") != "extra_forbidden" or not error.get("loc"):
        return error
    name = str(error["loc"][-1])
    owner = _model_at(model, error["loc"][:-1])
    known = sorted(owner.model_fields) if owner else []
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return {**error, "msg": f"unknown field; {hint}fal would ignore it silently. Known fields: {', '.join(known)}"}


def _model_at(model: type[EndpointInput], loc: tuple[Any, ...]) -> type[EndpointInput] | None:
    """The nested model a pydantic error location points into (for prompts inside lists)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if hasattr(current, "model_fields") else None
        if field is None:
            return None
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, EndpointInput)), None)
        if current is None:
            return None
    return current


def _entries() -> list[Endpoint]:
    image_request, video_unit = "request", "16 frames"
    common = [
        ("image", "image", "SAM 3 image segmentation", m.SegmentImageInput, m.SegmentImageOutput, 0.005, image_request),
        ("image-rle", "image-rle", "SAM 3 RLE", m.SegmentImageInput, m.SegmentImageRleOutput, 0.005, image_request),
        ("video-rle", "video-rle", "SAM 3 video RLE", m.SegmentVideoRleInput, m.SegmentVideoRleOutput, 0.005, video_unit),
    ]
    entries = [
        Endpoint(f"fal-ai/sam-3/{path}", kind, "3", title, inp, out, price, unit)
        for path, kind, title, inp, out, price, unit in common
    ]
    entries += [
        Endpoint("fal-ai/sam-3/image/embed", "embed", "3", "SAM 3 Vision (embeddings)",
                 m.EmbedImageInput, m.EmbedImageOutput, 0.005, image_request),
        Endpoint("fal-ai/sam-3/video", "video", "3", "SAM 3 video", m.SegmentVideoInput, m.SegmentVideoOutput,
                 0.005, video_unit),
        Endpoint("fal-ai/sam-3/video-rle-objects", "video-rle-objects", "3", "SAM 3 video RLE per object",
                 m.SegmentVideoObjectsInput, m.SegmentVideoObjectsOutput, None, None),
        Endpoint("fal-ai/sam-3/3d-objects", "3d-objects", "3", "SAM 3 3D Objects",
                 m.Reconstruct3DObjectsInput, m.Reconstruct3DObjectsOutput, 0.065, image_request),
        Endpoint("fal-ai/sam-3/3d-body", "3d-body", "3", "SAM 3 3D Body",
                 m.Reconstruct3DBodyInput, m.Reconstruct3DBodyOutput, None, None),
        Endpoint("fal-ai/sam-3/3d-align", "3d-align", "3", "SAM 3 3D align",
                 m.Align3DInput, m.Align3DOutput, None, None),
    ]
    # SAM 3.1: same shapes as SAM 3 (video adds max_num_objects); fal has not published prices.
    entries += [
        Endpoint(f"fal-ai/sam-3-1/{path}", kind, "3.1", title.replace("SAM 3", "SAM 3.1"), inp, out, None, None)
        for path, kind, title, inp, out, _price, _unit in common
    ]
    entries.append(
        Endpoint("fal-ai/sam-3-1/video", "video", "3.1", "SAM 3.1 video", m.SegmentVideoInputV31,
                 m.SegmentVideoOutput, None, None)
    )
    return entries


ENDPOINTS: dict[str, Endpoint] = {e.endpoint_id: e for e in _entries()}
VERSIONS = ("3", "3.1")


def get_endpoint(endpoint_id: str) -> Endpoint:
    """The registry entry for ``endpoint_id``; an unknown id is an error listing the known ones."""
    try:
        return ENDPOINTS[endpoint_id]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(endpoint_id), list(ENDPOINTS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputValidationError(
            "endpoint_id", f"{endpoint_id!r} is not a SAM 3 endpoint; {hint}", allowed=", ".join(ENDPOINTS)
        ) from None


def endpoint_for(kind: str, version: str = "3") -> Endpoint:
    """The endpoint of one kind (``"image"``, ``"video-rle"``, ...) in one SAM version (``"3"`` or ``"3.1"``)."""
    for endpoint in ENDPOINTS.values():
        if endpoint.kind == kind and endpoint.version == version:
            return endpoint
    if version not in VERSIONS:
        raise InputValidationError("version", f"{version!r} is not a SAM version", allowed=", ".join(VERSIONS))
    offered = sorted({e.kind for e in ENDPOINTS.values() if e.version == version})
    raise InputValidationError("kind", f"SAM {version} has no {kind!r} endpoint", allowed=", ".join(offered))
