"""Fixtures of the result-document tests: real mask PNGs and fal-shaped outputs."""

from __future__ import annotations

import numpy as np
import pytest
from results_helpers import HEIGHT, MEDIA, WIDTH, Downloads, masks

from airflow_provider_sam3.media.render import mask_to_png
from airflow_provider_sam3.media.rle import rle_encode


@pytest.fixture
def mask_arrays() -> list[np.ndarray]:
    return masks(2)


@pytest.fixture
def mask_pngs(mask_arrays) -> dict[str, bytes]:
    """fal URL -> real PNG bytes, the media a stand-in ``download`` serves."""
    files = {f"{MEDIA}/mask_{i}.png": mask_to_png(m) for i, m in enumerate(mask_arrays)}
    files[f"{MEDIA}/preview.png"] = mask_to_png(mask_arrays[0] | mask_arrays[1])
    return files


@pytest.fixture
def image_output(mask_pngs) -> dict:
    """An /image output with a preview, two masks, scores and boxes."""
    return {
        "image": {"url": f"{MEDIA}/preview.png", "content_type": "image/png", "width": WIDTH, "height": HEIGHT},
        "masks": [
            {"url": f"{MEDIA}/mask_{i}.png", "content_type": "image/png", "width": WIDTH, "height": HEIGHT}
            for i in range(2)
        ],
        "scores": [0.9, 0.7],
        "boxes": [[0.5, 0.5, 0.25, 0.5], None],
    }


@pytest.fixture
def rle_output(mask_arrays) -> dict:
    return {"rle": [rle_encode(m) for m in mask_arrays], "scores": [0.8, 0.6]}


@pytest.fixture
def downloads(mask_pngs) -> Downloads:
    return Downloads(dict(mask_pngs))
