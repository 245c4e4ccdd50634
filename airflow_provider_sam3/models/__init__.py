"""Typed descriptions of every SAM 3 endpoint's input and output, and of the request reference.

The names below are imported from their submodules on first access (PEP 562): importing one submodule, e.g.
``airflow_provider_sam3.models.reference`` from an operator module that a DAG file imports, runs this package's
``__init__`` first, and building every endpoint model there would cost each DAG parse tens of milliseconds.
``from airflow_provider_sam3.models import SegmentImageInput`` works as before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        SegmentVideoRleInputV31,
        SegmentVideoRleOutput,
    )

_SUBMODULE = {
    "File": "files",
    "ImageFile": "files",
    "EmbedImageInput": "image",
    "EmbedImageOutput": "image",
    "MaskMetadata": "image",
    "SegmentImageInput": "image",
    "SegmentImageOutput": "image",
    "SegmentImageRleOutput": "image",
    "BoxPrompt": "prompts",
    "BoxPromptBase": "prompts",
    "PointPrompt": "prompts",
    "PointPromptBase": "prompts",
    "RequestReference": "reference",
    "Align3DInput": "three_d",
    "Align3DOutput": "three_d",
    "Reconstruct3DBodyInput": "three_d",
    "Reconstruct3DBodyOutput": "three_d",
    "Reconstruct3DObjectsInput": "three_d",
    "Reconstruct3DObjectsOutput": "three_d",
    "SegmentVideoInput": "video",
    "SegmentVideoInputV31": "video",
    "SegmentVideoObjectsInput": "video",
    "SegmentVideoObjectsOutput": "video",
    "SegmentVideoOutput": "video",
    "SegmentVideoRleInput": "video",
    "SegmentVideoRleInputV31": "video",
    "SegmentVideoRleOutput": "video",
}


_SUBMODULES = frozenset({"base", "files", "image", "prompts", "reference", "results", "status", "three_d", "video"})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # ``models.image`` without importing it first, as when this package imported them all
        return importlib.import_module(f"{__name__}.{name}")
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{submodule}"), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
    "SegmentVideoRleInputV31",
    "SegmentVideoRleOutput",
]
