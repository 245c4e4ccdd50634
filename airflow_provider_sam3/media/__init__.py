"""Media codecs for SAM 3 on fal: RLE masks, boxes, mask PNGs, overlays, embeddings and input images.

Pure numpy and Pillow, no Airflow. This facade imports nothing heavy: each public name is loaded from its
submodule on first use, so DAG files can import the package freely.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "rle_decode": "rle",
    "rle_decode_many": "rle",
    "rle_encode": "rle",
    "cxcywh_to_xyxy": "boxes",
    "xyxy_to_cxcywh": "boxes",
    "mask_box": "boxes",
    "MaskStats": "masks",
    "mask_from_image": "masks",
    "mask_stats": "masks",
    "PALETTE": "render",
    "contact_sheet": "render",
    "cutout": "render",
    "encode_png": "render",
    "mask_to_png": "render",
    "overlay": "render",
    "embedding_array": "embedding",
    "embedding_bytes": "embedding",
    "encode_embedding": "embedding",
    "ACCEPTED_IMAGE_FORMATS": "inputs",
    "DEFAULT_MAX_PIXELS": "inputs",
    "PreparedImage": "inputs",
    "parse_data_uri": "inputs",
    "prepare_image": "inputs",
    "to_data_uri": "inputs",
    "image_size_at_url": "probe",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from airflow_provider_sam3.media.boxes import cxcywh_to_xyxy, mask_box, xyxy_to_cxcywh
    from airflow_provider_sam3.media.embedding import embedding_array, embedding_bytes, encode_embedding
    from airflow_provider_sam3.media.inputs import (
        ACCEPTED_IMAGE_FORMATS,
        DEFAULT_MAX_PIXELS,
        PreparedImage,
        parse_data_uri,
        prepare_image,
        to_data_uri,
    )
    from airflow_provider_sam3.media.masks import MaskStats, mask_from_image, mask_stats
    from airflow_provider_sam3.media.probe import image_size_at_url
    from airflow_provider_sam3.media.render import PALETTE, contact_sheet, cutout, encode_png, mask_to_png, overlay
    from airflow_provider_sam3.media.rle import rle_decode, rle_decode_many, rle_encode


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
