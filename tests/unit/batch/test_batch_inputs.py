"""Validation of a batch's images from their headers: regular files within the cap only, refused by name."""

from __future__ import annotations

import io
import logging
import os

import pytest
from PIL import Image

from airflow_provider_sam3.batch.inputs import InputLimits, inspect_image, inspect_images
from airflow_provider_sam3.batch.listing import BatchImage
from airflow_provider_sam3.batch.planning import plan_batch
from airflow_provider_sam3.endpoints import endpoint_for
from airflow_provider_sam3.exceptions import InputValidationError

LOG = logging.getLogger("test")


def png(path, size=(40, 30), exif_orientation=None):
    image = Image.new("RGB", size, (200, 40, 40))
    buffer = io.BytesIO()
    if exif_orientation is None:
        image.save(buffer, format="PNG")
    else:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, format="JPEG", exif=exif.tobytes())
    path.write_bytes(buffer.getvalue())
    return path


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "camera.png"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    with pytest.raises(InputValidationError) as raised:
        inspect_image(BatchImage(str(fifo)), "images[3]", InputLimits())
    assert "images[3]" in str(raised.value) and "FIFO" in str(raised.value) and str(fifo) in str(raised.value)


def test_a_device_behind_an_image_name_is_refused(tmp_path):
    link = tmp_path / "zero.png"
    link.symlink_to("/dev/zero")  # read() would never end
    with pytest.raises(InputValidationError) as raised:
        inspect_image(BatchImage(str(link)), "images[0]", InputLimits())
    assert "character device" in str(raised.value) and "zero.png" in str(raised.value)


def test_a_file_above_the_cap_is_refused_from_its_size(tmp_path):
    big = png(tmp_path / "big.png", size=(300, 300))
    limit = big.stat().st_size - 1
    with pytest.raises(InputValidationError) as raised:
        inspect_image(BatchImage(str(big)), "images[1]", InputLimits(max_input_bytes=limit))
    message = str(raised.value)
    assert "images[1]" in message and f"max_input_bytes={limit:,}" in message
    assert inspect_image(BatchImage(str(big)), "images[1]", InputLimits(max_input_bytes=limit + 1)).width == 300


def test_a_text_file_named_png_is_refused_from_its_first_bytes(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("just some text, not an image\n")
    with pytest.raises(InputValidationError) as raised:
        inspect_image(BatchImage(str(fake)), "images[2]", InputLimits())
    assert "looks like text" in str(raised.value)


def test_the_size_is_read_from_the_header_upright(tmp_path):
    plain = png(tmp_path / "plain.png", size=(40, 30))
    turned = png(tmp_path / "turned.jpg", size=(40, 30), exif_orientation=6)  # fal sees it turned a quarter
    facts = inspect_images(
        [("images[0]", BatchImage(str(plain))), ("images[1]", BatchImage(str(turned)))], InputLimits()
    )
    assert [(f.width, f.height) for f in facts] == [(40, 30), (30, 40)]


def test_planning_names_every_refused_image_and_keeps_input_order(tmp_path):
    good = [png(tmp_path / f"ok{n}.png") for n in range(3)]
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    images = [BatchImage(str(good[0])), BatchImage(str(fifo)), BatchImage(str(good[1])), BatchImage(str(good[2]))]
    endpoint = endpoint_for("image", "3")
    options = dict(shared={"prompt": "box"}, limits=InputLimits(), timeout=60, shard=None, log=LOG)
    with pytest.raises(InputValidationError) as raised:
        plan_batch(endpoint, images, skip_invalid=False, **options)
    assert "1 of 4 images cannot be sent" in str(raised.value) and "images[1]" in str(raised.value)
    state = plan_batch(endpoint, images, skip_invalid=True, **options)
    assert [e.state for e in state.ordered()] == ["pending", "invalid", "pending", "pending"]
    assert [e.index for e in state.ordered()] == [0, 1, 2, 3]


def test_shards_split_a_listing_once_and_only_once(tmp_path):
    from airflow_provider_sam3.batch.planning import shard_of

    sources = [f"/data/photos/p{n:05d}.jpg" for n in range(4000)]
    shards = [shard_of(source, 4) for source in sources]
    sizes = [shards.count(number) for number in range(4)]
    assert sum(sizes) == 4000 and min(sizes) > 800  # every image in exactly one shard, none starved
    assert shards == [shard_of(source, 4) for source in sources]  # the same split in every shard task
