from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from airflow_provider_sam3.exceptions import InputValidationError, InvalidImageError
from airflow_provider_sam3.media import inputs
from airflow_provider_sam3.media.inputs import (
    ACCEPTED_IMAGE_FORMATS,
    DEFAULT_MAX_PIXELS,
    PreparedImage,
    parse_data_uri,
    prepare_image,
    to_data_uri,
)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _payload(prepared: PreparedImage) -> bytes:
    mime, data = parse_data_uri(prepared.url)
    assert mime == f"image/{prepared.format}"
    return data


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


PHOTO = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8), "RGB")


def test_accepted_formats_constant():
    assert ACCEPTED_IMAGE_FORMATS == ("jpg", "jpeg", "png", "webp", "gif", "avif")
    assert DEFAULT_MAX_PIXELS == 8192 * 8192


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.png", "http://10.0.0.1:8080/a/b.jpg?x=1", "HTTPS://v3.fal.media/files/x"],
)
def test_url_passthrough(url):
    prepared = prepare_image(url)
    assert prepared.url == url
    assert (prepared.width, prepared.height, prepared.format, prepared.byte_size) == (None, None, None, None)


def test_url_source_hides_credentials_and_query():
    prepared = prepare_image("https://user:secret@bucket.example.com/a.png?X-Amz-Signature=abc")
    assert prepared.source == "https://bucket.example.com/a.png?..."
    assert "secret" not in prepared.source and "abc" not in prepared.source


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://example.com/cat.png", "ftp: sources are not accepted"),
        ("s3://bucket/cat.png", "ObjectStoragePath"),
        ("javascript:alert(1)", "javascript: sources are not accepted"),
        ("https:///cat.png", "has no host"),
        ("http://exa mple.com/cat.png", "whitespace"),
        ("http://[::1/cat.png", "not a valid URL"),
    ],
)
def test_bad_urls_rejected(url, needle):
    with pytest.raises(InvalidImageError) as info:
        prepare_image(url, field="reference_image_url")
    assert info.value.field == "reference_image_url"
    assert str(info.value).startswith("reference_image_url: ")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("fmt", "suffix", "mime"),
    [
        ("PNG", "png", "image/png"),
        ("JPEG", "jpg", "image/jpeg"),
        ("WEBP", "webp", "image/webp"),
        ("GIF", "gif", "image/gif"),
    ],
)
def test_local_files_become_data_uris(tmp_path, fmt, suffix, mime):
    data = _encode(PHOTO, fmt)
    path = tmp_path / f"photo.{suffix}"
    path.write_bytes(data)
    for source in (path, str(path)):
        prepared = prepare_image(source)
        assert prepared.url.startswith(f"data:{mime};base64,")
        assert _payload(prepared) == data  # untouched bytes
        assert (prepared.width, prepared.height) == (40, 20)
        assert prepared.byte_size == len(data)
        assert prepared.source == str(path)


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow cannot encode AVIF")
def test_avif_file(tmp_path):
    data = _encode(PHOTO, "AVIF")
    prepared = prepare_image(data)
    assert (prepared.format, prepared.width, prepared.height) == ("avif", 40, 20)
    assert prepared.source == f"bytes ({len(data)} B)"


def test_avif_passthrough_when_pillow_cannot_decode(monkeypatch):
    data = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1" + b"\x00" * 40

    def cannot_open(*args, **kwargs):
        raise inputs.UnidentifiedImageError("no AVIF plugin")

    monkeypatch.setattr(inputs.Image, "open", cannot_open)
    monkeypatch.setattr(inputs.features, "check", lambda name: False)
    prepared = prepare_image(data)
    assert prepared.url.startswith("data:image/avif;base64,")
    assert (prepared.format, prepared.width, prepared.height) == ("avif", None, None)
    with pytest.raises(InvalidImageError):
        prepare_image(b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00heicmif1" + b"\x00" * 40)


def test_corrupt_avif_rejected_when_pillow_decodes_avif():
    if not features.check("avif"):
        pytest.skip("this Pillow cannot decode AVIF")
    data = _encode(PHOTO, "AVIF")
    with pytest.raises(InvalidImageError) as info:
        prepare_image(data[:40])
    assert "truncated or corrupt" in str(info.value)


def test_text_file_named_png_rejected(tmp_path):
    path = tmp_path / "x.png"
    path.write_text("hello, I am not a picture\n")
    with pytest.raises(InvalidImageError) as info:
        prepare_image(path)
    message = str(info.value)
    assert info.value.field == "image_url"
    assert "image_url" in message
    assert "looks like text" in message
    assert str(path) in message
    for fmt in ACCEPTED_IMAGE_FORMATS:
        assert fmt in message


def test_unaccepted_real_image_format_rejected():
    with pytest.raises(InvalidImageError) as info:
        prepare_image(_encode(PHOTO, "BMP"))
    assert "BMP image" in str(info.value)
    assert "allowed: jpg, jpeg, png, webp, gif, avif" in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(InvalidImageError) as info:
        prepare_image(path)
    assert "is empty" in str(info.value)
    with pytest.raises(InvalidImageError, match="is empty"):
        prepare_image(b"")


def test_missing_path_and_directory(tmp_path):
    missing = tmp_path / "nope.png"
    with pytest.raises(InvalidImageError) as info:
        prepare_image(str(missing))
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    with pytest.raises(InvalidImageError, match="is a directory"):
        prepare_image(tmp_path)


def test_file_uri_is_a_local_path(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(_encode(PHOTO, "PNG"))
    prepared = prepare_image(path.as_uri())
    assert prepared.format == "png" and prepared.width == 40


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(fmt):
    """A broken file of an accepted format is told it is broken, not which formats are accepted."""
    data = _encode(PHOTO, fmt)
    with pytest.raises(InvalidImageError) as info:
        prepare_image(data[: len(data) // 2])
    assert "truncated or corrupt" in str(info.value) and "allowed:" not in str(info.value)
    assert "export or copy it again" in str(info.value)
    with pytest.raises(InvalidImageError) as info:
        prepare_image(data[:4])  # cut inside its header: Pillow cannot even tell its format
    assert f"is a {fmt} file that is truncated or corrupt" in str(info.value) and "allowed:" not in str(info.value)


def test_pixel_limit_checked_before_decoding():
    # A header claiming 9000x9000 with almost no pixel data: refused for its size, not as truncated.
    with pytest.raises(InvalidImageError) as info:
        prepare_image(_png_header(9000, 9000))
    message = str(info.value)
    assert "9000x9000" in message and "81,000,000" in message and f"{DEFAULT_MAX_PIXELS:,}" in message


def test_pillow_decompression_bomb_rejected():
    with pytest.raises(InvalidImageError) as info:
        prepare_image(_png_header(30000, 30000))
    message = str(info.value)
    assert "decompression bomb" in message and f"{DEFAULT_MAX_PIXELS:,}" in message


def test_custom_pixel_limit_on_real_image():
    big = _encode(Image.new("1", (300, 300)), "PNG")
    with pytest.raises(InvalidImageError) as info:
        prepare_image(big, max_pixels=10_000)
    assert "300x300" in str(info.value) and "10,000" in str(info.value)
    assert prepare_image(big, max_pixels=90_000).width == 300
    with pytest.raises(InvalidImageError, match="300x300"):
        prepare_image(Image.new("1", (300, 300)), max_pixels=10_000)


def _oriented_jpeg(orientation: int) -> bytes:
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)  # stored left half red
    pixels[:, 20:] = (0, 0, 255)  # stored right half blue
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(pixels, "RGB"), "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_applied():
    prepared = prepare_image(_oriented_jpeg(6))
    assert (prepared.width, prepared.height) == (20, 40)
    assert prepared.format == "jpeg"
    upright = Image.open(io.BytesIO(_payload(prepared)))
    assert upright.size == (20, 40)
    assert upright.getexif().get(0x0112, 1) == 1
    top, bottom = upright.convert("RGB").getpixel((10, 5)), upright.convert("RGB").getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # orientation 6 rotates 90 clockwise: stored left lands on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert prepared.byte_size == len(_payload(prepared))


def test_exif_orientation_one_keeps_original_bytes():
    data = _oriented_jpeg(1)
    prepared = prepare_image(data)
    assert (prepared.width, prepared.height) == (40, 20)
    assert _payload(prepared) == data


def test_exif_orientation_on_gif_reencodes_as_png():
    exif = Image.Exif()
    exif[0x0112] = 8
    image = PHOTO.copy()
    image.info["exif"] = exif.tobytes()
    # PIL images carry their EXIF along; they are turned upright too.
    prepared = prepare_image(image)
    assert (prepared.format, prepared.width, prepared.height) == ("png", 20, 40)


class _Stored:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read_bytes(self) -> bytes:
        return self._data

    def __str__(self) -> str:
        return "s3://aws_default@bucket/photo.png"


class _Broken:
    protocol = "s3"

    def read_bytes(self) -> bytes:
        raise PermissionError("access denied")

    def __str__(self) -> str:
        return "s3://bucket/secret.png"


def test_read_bytes_object():
    data = _encode(PHOTO, "PNG")
    prepared = prepare_image(_Stored(data))
    assert prepared.source == "s3://aws_default@bucket/photo.png"
    assert _payload(prepared) == data and prepared.width == 40
    with pytest.raises(InvalidImageError) as info:
        prepare_image(_Broken())
    assert "s3://bucket/secret.png could not be read" in str(info.value)
    assert "PermissionError" in str(info.value)


def test_pil_image_encoded_as_png():
    prepared = prepare_image(PHOTO)
    assert prepared.format == "png" and (prepared.width, prepared.height) == (40, 20)
    assert prepared.source == "PIL image (RGB, 40x20)"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(_payload(prepared)))), np.asarray(PHOTO))
    cmyk = prepare_image(PHOTO.convert("CMYK"))
    assert Image.open(io.BytesIO(_payload(cmyk))).mode == "RGB"


def test_bytes_like_sources():
    data = _encode(PHOTO, "PNG")
    for source in (data, bytearray(data), memoryview(data)):
        prepared = prepare_image(source)
        assert prepared.source == f"bytes ({len(data)} B)"
        assert _payload(prepared) == data


def test_data_uri_sniffed_not_trusted():
    data = _encode(PHOTO, "PNG")
    lying = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    prepared = prepare_image(lying)
    assert prepared.url == "data:image/png;base64," + base64.b64encode(data).decode()
    assert prepared.format == "png" and prepared.width == 40
    assert prepared.source == f"data URI (image/jpeg, {len(data)} B)"
    assert "base64," not in prepared.source


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("data:image/png,rawtext", "not base64-encoded"),
        ("data:image/png;base64", "without a ','"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64,QUJD=", "not valid base64"),
        ("data:text/plain;base64," + base64.b64encode(b"hello").decode(), "looks like text"),
        ("data:image/png;base64,", "is empty"),
    ],
)
def test_bad_data_uris(uri, needle):
    with pytest.raises(InvalidImageError) as info:
        prepare_image(uri, field="mask_url")
    assert info.value.field == "mask_url"
    assert needle in str(info.value)


def test_data_uri_helpers_round_trip():
    uri = to_data_uri(b"\x00\x01binary", "application/octet-stream")
    assert uri == "data:application/octet-stream;base64,AAFiaW5hcnk="
    assert parse_data_uri(uri) == ("application/octet-stream", b"\x00\x01binary")
    assert parse_data_uri("data:;base64,QUJD") == ("text/plain", b"ABC")
    with pytest.raises(InputValidationError):
        to_data_uri(b"x", "not a mime")
    with pytest.raises(InvalidImageError):
        parse_data_uri("https://example.com/x.png")


@pytest.mark.parametrize("source", [None, 42, 3.5, ["https://example.com/a.png"], ""])
def test_unsupported_sources(source):
    with pytest.raises(InvalidImageError) as info:
        prepare_image(source)
    assert info.value.field == "image_url"


def test_accepts_mpo_as_jpeg(tmp_path):
    # Camera JPEGs often open as MPO in Pillow; they are JPEG files and fal takes them as such.
    data = _encode(PHOTO, "MPO", save_all=True, append_images=[PHOTO])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    prepared = prepare_image(data)
    assert prepared.format == "jpeg" and prepared.url.startswith("data:image/jpeg;")


def test_path_with_colon_that_exists_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("img:1.png").write_bytes(_encode(PHOTO, "PNG"))
    assert prepare_image("img:1.png").format == "png"
