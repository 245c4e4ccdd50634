"""Reading an image's size from the start of a URL (RLE results of URL images), against files the emulator serves."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from airflow_provider_sam3.media.probe import image_size_at_url


def _encoded(fmt: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_size_is_read_from_the_header(fal_emulator, fmt):
    url = fal_emulator.host_file(_encoded(fmt, (321, 123)), f"photo.{fmt.lower()}", f"image/{fmt.lower()}")
    assert image_size_at_url(url) == (321, 123)


def test_a_large_file_is_not_read_to_the_end(fal_emulator):
    noise = Image.effect_noise((3000, 3000), 80).convert("RGB")  # about 9 MB as PNG
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG", compress_level=0)
    url = fal_emulator.host_file(buffer.getvalue(), "big.png", "image/png")
    assert image_size_at_url(url, max_bytes=64 * 1024) == (3000, 3000)


def test_what_is_not_an_image_says_why(fal_emulator):
    with pytest.raises(ValueError, match="HTTP 404"):
        image_size_at_url(f"https://{fal_emulator.host}/no/such/file.png")
    text = fal_emulator.host_file(b"hello, these are notes\n" * 10, "notes.png", "image/png")
    with pytest.raises(ValueError, match="not an image|no image header"):
        image_size_at_url(text)


def test_a_failure_does_not_repeat_a_presigned_url():
    url = "https://127.0.0.1:1/photo.png?X-Amz-Signature=s3cr3t"  # nothing listens on port 1
    with pytest.raises(ValueError) as failed:
        image_size_at_url(url, timeout=2)
    assert "ConnectError" in str(failed.value) and "s3cr3t" not in str(failed.value)
