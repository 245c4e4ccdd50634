"""Result documents are untrusted input to their readers: an XCom can be edited, a document can come from another
team's task. Readers check shapes, sizes and counts against the document's own image size and the provider's pixel
cap before allocating; read local files only inside the document's own output location; check ``byte_size``
first; and decode mask images through one decoder that compares their size with the image's.

Every document here starts as a real one, made by the operator against the emulator (the positive control reads it
whole); each attack then edits one field, as a hostile or careless writer of the XCom would.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tracemalloc
import warnings

import pytest

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.results import (
    EmbeddingResult,
    FilesResult,
    ResultDocumentError,
    SegmentationResult,
)


@pytest.fixture
def image_doc(fal_emulator, connect, photo, tmp_path) -> dict:
    """A real ``image`` document with its masks stored under ``tmp_path/out``."""
    from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

    operator = SegmentImageOperator(
        task_id="t", image=str(photo), prompt="square", deferrable=False, output_path=str(tmp_path / "out")
    )
    return operator.execute({})


@pytest.fixture
def rle_doc(fal_emulator, connect, photo) -> dict:
    from airflow_provider_sam3.operators.sam3 import SegmentImageRleOperator

    return SegmentImageRleOperator(task_id="t", image=str(photo), prompt="square", deferrable=False).execute({})


def own_folder(doc: dict):
    """The document's own output location, as a local path."""
    from pathlib import Path

    return Path(doc["output_location"].removeprefix("file://"))


def edited(doc: dict, **changes) -> dict:
    out = copy.deepcopy(doc)
    out.update(changes)
    return out


def png(width: int, height: int, mode: str = "L") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.new(mode, (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def peak_mib(call) -> tuple[object, float]:
    """``call()``'s outcome (its value or the exception it raised) and the traced peak of memory it allocated."""
    tracemalloc.start()
    try:
        try:
            outcome: object = call()
        except Exception as error:  # noqa: BLE001 - the outcome is the test's to judge
            outcome = error
        return outcome, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------ positive controls: real documents read whole


def test_real_documents_are_read_whole(image_doc, rle_doc):
    image = SegmentationResult.from_xcom(image_doc)
    (mask,) = image.mask_arrays()
    assert mask.shape == (64, 96) and mask.sum() == 32 * 32
    rle = SegmentationResult.from_xcom(rle_doc)
    assert rle.areas == [32 * 32] and rle.mask_arrays()[0].shape == (64, 96)


# ------------------------------------------------------------------ sizes and runs, checked before allocating


def test_a_225_byte_document_cannot_ask_for_40_g_pixels(rle_doc):
    hostile = edited(rle_doc, rle_size=[200_000, 200_000], image={"source": None, "width": None, "height": None})
    hostile["masks"] = [{"index": 0, "rle": "1 10"}]
    assert len(json.dumps({"rle_size": hostile["rle_size"], "masks": hostile["masks"]})) < 100
    outcome, peak = peak_mib(lambda: SegmentationResult.from_xcom(hostile).mask_arrays())
    assert isinstance(outcome, ResultDocumentError) and "rle_size" in str(outcome)
    assert peak < 50


def test_an_image_size_above_the_pixel_cap_is_refused(image_doc):
    with pytest.raises(ResultDocumentError) as raised:
        SegmentationResult.from_xcom(edited(image_doc, image={"source": "x.png", "width": 100_000, "height": 100_000}))
    assert "image" in str(raised.value)


@pytest.mark.parametrize(
    ("rle", "says"),
    [("1 -1000", "length"), ("-5 10", "starts"), ("6140 10", "6144"), ("1 2 3", "odd"), ("1 x", "not an integer")],
)
def test_runs_that_cannot_be_are_refused_by_every_reader(rle, says, rle_doc):
    doc = copy.deepcopy(rle_doc)
    doc["masks"][0]["rle"] = rle
    result = SegmentationResult.from_xcom(doc)
    for read in (lambda: result.areas, lambda: result.mask_arrays(), lambda: result.to_rows(with_area=True)):
        with pytest.raises((ResultDocumentError, InputValidationError)) as raised:
            read()
        assert "masks[0].rle" in str(raised.value) and says in str(raised.value)


def test_more_masks_than_fal_returns_are_refused(rle_doc):
    doc = copy.deepcopy(rle_doc)
    doc["masks"] = [dict(doc["masks"][0], index=0) for _ in range(10_000)]
    with pytest.raises(ResultDocumentError) as raised:
        SegmentationResult.from_xcom(doc)
    assert "masks" in str(raised.value)


# ------------------------------------------------------------------ local files: only the document's own


@pytest.mark.parametrize("target", ["dev_zero", "fifo", "outside", "link_out", "etc_passwd"])
def test_stored_urls_are_read_only_inside_the_output_location(target, image_doc, tmp_path):
    out = own_folder(image_doc)
    secret = tmp_path / "secret.png"
    secret.write_bytes(png(96, 64))
    location = {
        "dev_zero": "/dev/zero",
        "fifo": str(out / "pipe.png"),
        "outside": str(secret),
        "link_out": str(out / "link.png"),
        "etc_passwd": "file:///etc/passwd",
    }[target]
    if target == "fifo":
        os.mkfifo(out / "pipe.png")
    if target == "link_out":
        (out / "link.png").symlink_to(secret)
    doc = copy.deepcopy(image_doc)
    doc["masks"][0]["stored_url"] = location
    with pytest.raises(ResultDocumentError) as raised:
        SegmentationResult.from_xcom(doc).mask_arrays()
    message = str(raised.value)
    assert "masks[0]" in message
    assert ("FIFO" in message) if target == "fifo" else ("outside" in message or "not a regular file" in message)


def test_load_data_reads_no_arbitrary_file(tmp_path):
    """``load_data()`` returned the contents of any JSON file on the worker."""
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "airflow_connections.json"
    elsewhere.write_text(json.dumps({"conn": "postgres://user:pw@db"}))
    inside = out / "data.json"
    inside.write_text(json.dumps({"num_people": 2}))
    base = {"schema_version": 1, "kind": "sam3.files", "endpoint_id": "fal-ai/sam-3/3d-body", "request_id": "r1"}
    base["timings"] = {"completed_at": 1.0}
    base["output_location"] = str(out)
    assert FilesResult.from_xcom(dict(base, data_stored_url=str(inside))).load_data() == {"num_people": 2}
    with pytest.raises(ResultDocumentError) as raised:
        FilesResult.from_xcom(dict(base, data_stored_url=str(elsewhere))).load_data()
    assert "outside" in str(raised.value)
    with pytest.raises(ResultDocumentError):  # no output location: no local file is read at all
        FilesResult.from_xcom(
            {k: v for k, v in base.items() if k != "output_location"} | {"data_stored_url": str(inside)}
        ).load_data()
    deep = out / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ResultDocumentError) as raised:
        FilesResult.from_xcom(dict(base, data_stored_url=str(deep))).load_data()
    assert "not readable JSON" in str(raised.value)


def test_the_embedding_reader_checks_byte_size_before_reading(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    data = b"\x00\x01" * 512
    (out / "embedding.bin").write_bytes(data)
    import hashlib

    base = {"schema_version": 1, "kind": "sam3.embedding", "endpoint_id": "fal-ai/sam-3/image/embed"}
    base |= {"request_id": "r1", "output_location": str(out), "stored_url": str(out / "embedding.bin")}
    base["timings"] = {"completed_at": 1.0}
    good = dict(base, byte_size=len(data), sha256=hashlib.sha256(data).hexdigest())
    assert EmbeddingResult.from_xcom(good).load_bytes() == data
    (out / "zero.bin").symlink_to("/dev/zero")
    outcome, peak = peak_mib(
        lambda: EmbeddingResult.from_xcom(dict(good, stored_url=str(out / "zero.bin"), byte_size=10**12)).load_bytes()
    )
    assert isinstance(outcome, ResultDocumentError) and "byte_size" in str(outcome) and peak < 50
    with pytest.raises(ResultDocumentError) as raised:  # a source the caller chose is read up to byte_size only
        EmbeddingResult.from_xcom(good).load_bytes(str(out / "zero.bin"))
    assert "character device" in str(raised.value)


# ------------------------------------------------------------------ mask images: one decoder, sizes compared


def test_a_12000_square_mask_for_a_96_by_64_image_is_refused_before_decoding(image_doc, hostile, connect):
    """560 KB of PNG decoding to 137 MB (1.3 GB as RGB); Pillow only warns. Fetched from a media host the
    connection allows, through the hook's guarded download."""
    from airflow_provider_sam3.hooks.fal import FalHook

    huge = png(12_000, 12_000)
    assert len(huge) < 1_000_000
    small = png(96, 64)
    media = hostile(
        lambda method, path, server: (200, {"Content-Type": "image/png"}, huge if "huge" in path else small)
    )
    connect(media_hosts=[media.host])
    doc = copy.deepcopy(image_doc)
    doc["masks"][0]["stored_url"] = None
    doc["masks"][0]["url"] = f"{media.base_url}/huge.png"
    outcome, peak = peak_mib(lambda: SegmentationResult.from_xcom(doc).mask_arrays(fetch=FalHook().download))
    assert isinstance(outcome, Exception), outcome
    assert "12000x12000" in str(outcome) and "96x64" in str(outcome)
    assert peak < 60
    doc["masks"][0]["url"] = f"{media.base_url}/small.png"  # positive control: the right size is read
    (mask,) = SegmentationResult.from_xcom(doc).mask_arrays(fetch=FalHook().download)
    assert mask.shape == (64, 96)


def test_a_stored_mask_above_the_pixel_cap_is_refused_without_a_known_image_size(image_doc, tmp_path):
    bomb = own_folder(image_doc) / "bomb.png"
    bomb.write_bytes(png(20_000, 20_000, mode="1"))
    doc = copy.deepcopy(image_doc)
    doc["image"] = {"source": "elsewhere.png", "width": None, "height": None}
    doc["masks"][0]["stored_url"] = str(bomb)
    outcome, peak = peak_mib(lambda: SegmentationResult.from_xcom(doc).mask_arrays())
    assert isinstance(outcome, Exception) and "pixel" in str(outcome), outcome
    assert peak < 60
