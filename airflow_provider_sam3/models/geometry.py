"""Whether a request's points and boxes fall inside its image (pure: no Airflow, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_sam3.exceptions import InputValidationError

__all__ = ["check_prompt_geometry"]


def check_prompt_geometry(body: Mapping[str, Any], image: Mapping[str, Any] | None) -> None:
    """Points and boxes of ``body`` inside the image, when its width and height are known (a local image).

    fal would accept them and bill a request that cannot find anything. Coordinates are pixels: a point may be at
    ``x < width``, a box corner at ``x_max <= width``.
    """
    if not image:
        return
    width, height = image.get("width"), image.get("height")
    if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
        return
    size = f"the image is {width}x{height} pixels"
    for index, point in enumerate(body.get("point_prompts") or []):
        if not isinstance(point, Mapping):
            continue
        for axis, limit in (("x", width), ("y", height)):
            value = point.get(axis)
            if isinstance(value, int) and value >= limit:
                raise InputValidationError(
                    f"point_prompts[{index}].{axis}",
                    f"{value} is outside the image: {size}",
                    allowed=f"0 to {limit - 1}",
                )
    for index, box in enumerate(body.get("box_prompts") or []):
        if not isinstance(box, Mapping):
            continue
        for name, limit in (("x_min", width - 1), ("y_min", height - 1), ("x_max", width), ("y_max", height)):
            value = box.get(name)
            if isinstance(value, int) and value > limit:
                raise InputValidationError(
                    f"box_prompts[{index}].{name}", f"{value} is outside the image: {size}", allowed=f"0 to {limit}"
                )
