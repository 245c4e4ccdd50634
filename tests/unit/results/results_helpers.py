"""Helpers of the result-document tests: a request reference, the builder call, masks, a download stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.models.results import build_result

SEEDS = json.loads((Path(__file__).parents[2] / "fixtures" / "sam3_image_seed_examples.json").read_text())
WIDTH, HEIGHT = 40, 30
MEDIA = "https://v3b.fal.media/files/b/req"


def reference(endpoint_id: str = "fal-ai/sam-3/image", request_id: str = "req-1") -> RequestReference:
    base = f"https://queue.fal.run/fal-ai/sam-3/requests/{request_id}"
    return RequestReference(
        endpoint_id=endpoint_id,
        request_id=request_id,
        status_url=base + "/status",
        response_url=base,
        cancel_url=base + "/cancel",
        submitted_at=1000.0,
    )


def build(endpoint_id: str, output: dict, *, image: dict | None = None, **kwargs):
    """build_result the way the operator calls it."""
    kwargs.setdefault("completed_at", 1012.5)
    kwargs.setdefault("inference_seconds", 2.25)
    return build_result(
        ENDPOINTS[endpoint_id],
        output,
        reference=reference(endpoint_id, kwargs.pop("request_id", "req-1")),
        image=image,
        **kwargs,
    )


def masks(count: int = 2) -> list[np.ndarray]:
    """Distinct rectangles in a WIDTHxHEIGHT image."""
    out = []
    for i in range(count):
        mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
        mask[2 + i : 10 + 2 * i, 5 + 3 * i : 20 + i] = True
        out.append(mask)
    return out


class Downloads:
    """A stand-in for FalHook.download: serves fixed bytes per URL and counts calls (no HTTP involved)."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.files[url]
