"""Shared helpers of the emulator tests: synthetic images, raw HTTPS clients trusting the emulator, waiting."""

from __future__ import annotations

import io
import ssl
from collections.abc import Sequence

import httpx
import numpy as np
from PIL import Image
from waiting import wait_until  # noqa: F401 - re-exported for these tests

from airflow_provider_sam3.media.inputs import to_data_uri

IMAGE_ENDPOINT = "fal-ai/sam-3/image"
IMAGE_APP = "fal-ai/sam-3"
Box = tuple[int, int, int, int]


def squares_image(
    width: int = 160,
    height: int = 120,
    boxes: Sequence[Box] = ((40, 30, 120, 90),),
    color: tuple[int, int, int] = (250, 200, 30),
    background: tuple[int, int, int] = (12, 12, 12),
) -> Image.Image:
    """A dark image with bright filled rectangles at ``boxes`` (x_min, y_min, x_max exclusive, y_max exclusive)."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = background
    for x0, y0, x1, y1 in boxes:
        pixels[y0:y1, x0:x1] = color
    return Image.fromarray(pixels, "RGB")


def box_mask(width: int, height: int, box: Box) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[box[1] : box[3], box[0] : box[2]] = True
    return mask


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(image: Image.Image) -> str:
    return to_data_uri(png_bytes(image), "image/png")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def trust(cert_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cert_file)
    return context


def raw_client(emulator, *, key: str | None = "default", timeout: float = 10.0) -> httpx.Client:
    """An httpx client on the emulator's base URL (key: the emulator's, None for no Authorization header)."""
    headers = {}
    if key is not None:
        headers["Authorization"] = f"Key {emulator.api_key if key == 'default' else key}"
    return httpx.Client(base_url=emulator.base_url, verify=trust(emulator.cert_file), headers=headers, timeout=timeout)


def status_of(client: httpx.Client, request_id: str, app: str = IMAGE_APP, logs: str | None = None) -> httpx.Response:
    params = {} if logs is None else {"logs": logs}
    return client.get(f"/{app}/requests/{request_id}/status", params=params)


def state_of(client: httpx.Client, request_id: str, app: str = IMAGE_APP) -> str:
    return status_of(client, request_id, app).json()["status"]
