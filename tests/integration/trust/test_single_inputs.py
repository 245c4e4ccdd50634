"""The single-image path reads local files through the same guard as the batch (``guards.files``): regular files
only, size capped before a byte is read, large ones sent through fal storage; FIFOs, devices, folders and
oversized files refused by name before anything is sent. Templated collections are bounded (``guards.structure``).

Each attack has a positive control beside it: the same operator with an ordinary photo reaches the emulator.
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

PARAMS = {"image": ""}


@dag(dag_id="sam3_trust_single_input", schedule=None, params=PARAMS)
def single_input():
    SegmentImageOperator(task_id="segment", image="{{ params.image }}", prompt="square", poll_interval=0.2)


DAG = single_input()


def sent(fal_emulator) -> tuple[int, int]:
    counters = fal_emulator.counters()
    return counters["submissions"]["total"], counters["uploads"]["total"]


def refused(run_dag, fal_emulator, capfd, image: str) -> str:
    """Run the DAG with ``image``; assert it failed with nothing sent; return the task's log."""
    results = run_dag(DAG, image=image)
    log = "".join(capfd.readouterr())
    assert results["segment"][0] == "failed", results
    assert sent(fal_emulator) == (0, 0)
    return log


def test_a_photo_is_sent_positive_control(run_dag, fal_emulator, photo):
    results = run_dag(DAG, image=str(photo))
    assert results["segment"][0] == "success", results
    assert sent(fal_emulator) == (1, 0)
    (record,) = fal_emulator.requests()
    assert record["arguments"]["image_url"].startswith("data:image/png;base64,")


def test_a_png_symlink_to_dev_zero_is_refused_by_name(run_dag, fal_emulator, capfd, tmp_path):
    link = tmp_path / "photo.png"
    link.symlink_to("/dev/zero")
    log = refused(run_dag, fal_emulator, capfd, str(link))
    assert "InvalidImageError" in log and "image" in log and "character device" in log
    assert "MemoryError" not in log


def test_a_fifo_is_refused_without_being_opened(run_dag, fal_emulator, capfd, tmp_path):
    """Opening a FIFO for reading blocks until a writer comes: nobody writes here, so a test that opened it would
    never end."""
    fifo = tmp_path / "photo.png"
    os.mkfifo(fifo)
    log = refused(run_dag, fal_emulator, capfd, str(fifo))
    assert "FIFO" in log


def test_a_folder_named_like_a_photo_is_refused(run_dag, fal_emulator, capfd, tmp_path):
    folder = tmp_path / "photo.png"
    folder.mkdir()
    log = refused(run_dag, fal_emulator, capfd, str(folder))
    assert "folder" in log or "directory" in log


def test_a_file_above_the_cap_is_refused_before_a_byte_is_read(run_dag, fal_emulator, capfd, tmp_path):
    """A sparse 150 MB file: its size is read from the file system; reading it would hold 150 MB."""
    big = tmp_path / "huge.png"
    with open(big, "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n")
        handle.truncate(150 * 1024 * 1024)
    log = refused(run_dag, fal_emulator, capfd, str(big))
    assert f"{DEFAULT_MAX_INPUT_BYTES:,}" in log and "https URL" in log


def test_a_decompression_bomb_is_refused_by_its_header(run_dag, fal_emulator, capfd, tmp_path):
    """A 20,000 x 20,000 PNG of one colour is tiny on disk; decoded it is 1.2 GB. Its header is enough to refuse
    it (above the provider's pixel cap), before it is decoded or sent."""
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")
    assert bomb.stat().st_size < 2_000_000
    log = refused(run_dag, fal_emulator, capfd, str(bomb))
    assert "20000x20000" in log.replace(",", "").replace(" ", "") or "400000000" in log.replace(",", "")


def test_a_large_photo_goes_through_fal_storage_not_inline(run_dag, fal_emulator, tmp_path, monkeypatch):
    """Above 4 MiB a data URI would bloat the request (fal's limit is about 10 MB): the single path uploads it to
    fal storage, as the batch does, and sends its URL."""
    import fal_client.client
    import numpy as np
    from PIL import Image

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    noise = np.random.default_rng(3).integers(0, 255, size=(1400, 1400, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG")
    large = tmp_path / "large.png"
    large.write_bytes(out.getvalue())
    assert large.stat().st_size > 4 * 1024 * 1024
    results = run_dag(DAG, image=str(large))
    assert results["segment"][0] == "success", results
    assert fal_emulator.counters()["uploads"] == {"total": 1, "bytes": large.stat().st_size}
    (record,) = fal_emulator.requests()
    assert record["arguments"]["image_url"].startswith(fal_emulator.base_url)
    document = results["segment"][1]
    assert document["image"]["width"] == 1400 and document["image"]["source"].endswith("large.png")


@dag(dag_id="sam3_trust_nested_images", schedule=None, params={"images": "", "out": ""})
def nested_images():
    Sam3BatchOperator(
        task_id="segment",
        images="{{ params.images }}",
        output_path="{{ params.out }}",
        kind="image",
        arguments={"prompt": "square"},
        deferrable=False,
    )


BATCH_DAG = nested_images()


def nested(depth: int, inner: object) -> object:
    """``inner`` wrapped in ``depth`` lists, built without recursion."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("depth", "fails"), [(3000, True), (40, True), (0, False)])
def test_nested_images_text_is_an_input_error_naming_images(
    depth, fails, run_dag, fal_emulator, capfd, photo, tmp_path
):
    """``images`` rendered as ``[[[...]]]`` 3,000 deep raised ``RecursionError``; now the field is named. A flat
    list (depth 0) is the positive control."""
    images = "[" * depth + repr([str(photo)]) + "]" * depth
    results = run_dag(BATCH_DAG, images=images, out=str(tmp_path / "out"))
    log = "".join(capfd.readouterr())
    if not fails:
        assert results["segment"][0] == "success", results
        assert sent(fal_emulator)[0] == 1
        return
    assert results["segment"][0] == "failed"
    assert "RecursionError" not in log
    assert "images" in log and "levels deep" in log
    assert sent(fal_emulator) == (0, 0)


BOX = {"x_min": 30, "y_min": 16, "x_max": 62, "y_max": 48}


@pytest.mark.parametrize(("depth", "fails"), [(3000, True), (33, True), (1, False)])
def test_a_nested_value_given_to_the_single_operator_names_its_field(depth, fails, fal_emulator, connect, photo):
    """A value 3,000 deep (rendered natively or pulled from XCom) is refused naming ``box_prompts``; one list of
    boxes is the positive control."""
    from airflow_provider_sam3.exceptions import InputValidationError

    operator = SegmentImageOperator(task_id="t", image=str(photo), deferrable=False)
    # Set as a run sets it: BaseOperator.__setattr__ outside a run walks the value for XComArgs, itself recursively.
    object.__setattr__(operator, "box_prompts", nested(depth, BOX))
    if not fails:
        operator.execute({})
        assert sent(fal_emulator)[0] == 1
        return
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException) as raised:  # final: a retry would send the same value
        operator.execute({})
    assert isinstance(raised.value.__cause__, InputValidationError)
    assert "box_prompts" in str(raised.value) and "levels deep" in str(raised.value)
    assert sent(fal_emulator) == (0, 0)


@pytest.mark.parametrize(("depth", "fails"), [(3000, True), (0, False)])
def test_a_sensor_reference_nested_3000_deep_names_its_field(depth, fails, fal_emulator, connect, photo):
    """A reference rendered from ``dag_run.conf`` as text 3,000 deep: refused naming ``reference``, no call made. The
    control is a real reference, the same sensor finding its request done."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    image_url = "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()
    reference = FalHook().submit("fal-ai/sam-3/image", {"image_url": image_url, "prompt": "square"})
    text = json.dumps(reference.to_dict())
    sensor = FalRequestSensor(
        task_id="s", reference="[" * depth + text + "]" * depth, deferrable=False, poke_interval=0.2
    )
    if not fails:
        sensor.execute({})
        return
    with pytest.raises(AirflowFailException) as raised:
        sensor.execute({})
    assert "reference" in str(raised.value) and "levels deep" in str(raised.value)
    assert fal_emulator.counters()["status_calls"] == 0
