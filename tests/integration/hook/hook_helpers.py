"""Plain helpers of the FalHook integration tests: a test image, a connection in the environment, a dead port."""

from __future__ import annotations

import io
import json
import socket

from PIL import Image, ImageDraw
from waiting import wait_until  # noqa: F401 - re-exported for these tests

from airflow_provider_sam3.media.inputs import to_data_uri
from airflow_provider_sam3.models.reference import RequestReference

IMAGE_ENDPOINT = "fal-ai/sam-3/image"
RLE_ENDPOINT = "fal-ai/sam-3/image-rle"
IMAGE_APP = "fal-ai/sam-3"
WIDTH, HEIGHT = 96, 64
SQUARE = (30, 16, 61, 47)


def square_png(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A dark picture with one bright square: the emulator's segmenter finds exactly that square."""
    image = Image.new("RGB", (width, height), (20, 30, 40))
    ImageDraw.Draw(image).rectangle(list(SQUARE), fill=(240, 220, 60))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def flat_png(width: int = 64, height: int = 48) -> bytes:
    """A uniform grey picture: the segmenter finds nothing in it."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


SQUARE_URI = to_data_uri(square_png(), "image/png")
FLAT_URI = to_data_uri(flat_png(), "image/png")
ARGS = {"image_url": SQUARE_URI, "prompt": "square"}


def set_connection(
    monkeypatch, *, password: str | None, host: str | None, conn_id: str = "fal_default", **extra: object
) -> None:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>`` (no metadata DB needed)."""
    conn: dict[str, object] = {"conn_type": "fal"}
    if password is not None:
        conn["password"] = password
    if host is not None:
        conn["host"] = host
    if extra:
        conn["extra"] = extra
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def dead_port() -> int:
    """A loopback port nothing listens on (bound then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reference_at(
    host: str,
    request_id: str = "00000000-0000-0000-0000-00000000beef",
    endpoint_id: str = IMAGE_ENDPOINT,
    app: str = IMAGE_APP,
) -> RequestReference:
    """A reference built by hand, pointing at ``host`` (for unknown requests and unreachable hosts)."""
    base = f"https://{host}/{app}/requests/{request_id}"
    return RequestReference(
        endpoint_id=endpoint_id,
        request_id=request_id,
        status_url=f"{base}/status",
        response_url=base,
        cancel_url=f"{base}/cancel",
    )
