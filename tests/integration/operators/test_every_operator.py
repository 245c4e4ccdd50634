"""Every typed SAM 3 operator under dag.test() against the emulator, deferrable and not: same documents."""

from __future__ import annotations

import pytest
from airflow.sdk import dag
from documents import stable

from airflow_provider_sam3.operators import sam3 as ops

VIDEO = "{{ params.video_url }}"
MESH = "{{ params.mesh_url }}"
IMAGE = "{{ params.image }}"

# kind -> (operator class, keyword arguments): one call per registry kind.
CALLS = {
    "image": (
        ops.SegmentImageOperator,
        {"image": IMAGE, "prompt": "square", "include_scores": True, "include_boxes": True},
    ),
    "image-rle": (ops.SegmentImageRleOperator, {"image": IMAGE, "prompt": "square", "include_scores": True}),
    "embed": (ops.EmbedImageOperator, {"image": IMAGE, "output_path": "{{ params.out }}/{{ params.mode }}"}),
    "video": (ops.SegmentVideoOperator, {"video_url": VIDEO, "prompt": "person"}),
    "video-rle": (ops.SegmentVideoRleOperator, {"video_url": VIDEO, "prompt": "person"}),
    "video-rle-objects": (ops.SegmentVideoObjectsOperator, {"video_url": VIDEO, "prompt": "person"}),
    "3d-objects": (ops.Reconstruct3DObjectsOperator, {"image": IMAGE, "prompt": "square"}),
    "3d-body": (ops.Reconstruct3DBodyOperator, {"image": IMAGE}),
    "3d-align": (ops.Align3DOperator, {"image": IMAGE, "body_mesh_url": MESH}),
}


def make_dag(deferrable: bool):
    mode = "deferrable" if deferrable else "worker"

    @dag(
        dag_id=f"sam3_every_operator_{mode}",
        schedule=None,
        params={"image": "", "video_url": "", "mesh_url": "", "out": "", "mode": mode},
    )
    def every_operator():
        for kind, (cls, kwargs) in CALLS.items():
            cls(task_id=kind.replace("-", "_"), deferrable=deferrable, poll_interval=0.2, **kwargs)

    return every_operator()


DAGS = {True: make_dag(True), False: make_dag(False)}


@pytest.fixture
def inputs(photo, fal_emulator, tmp_path):
    return {
        "image": str(photo),
        "video_url": fal_emulator.host_file(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64, "clip.mp4", "video/mp4"),
        "mesh_url": fal_emulator.host_file(
            b"ply\nformat ascii 1.0\nend_header\n", "body.ply", "application/octet-stream"
        ),
        "out": f"file://{tmp_path}/out",
    }


def test_every_operator_succeeds_in_both_modes_with_identical_documents(run_dag, inputs, fal_emulator):
    by_mode = {}
    for deferrable in (True, False):
        results = run_dag(DAGS[deferrable], **inputs)
        links = results.pop("__links__")
        failed = {task: state for task, (state, _) in results.items() if task != "__run__" and state != "success"}
        assert not failed, f"deferrable={deferrable}: {failed}"
        by_mode[deferrable] = {task: doc for task, (_, doc) in results.items() if task != "__run__"}
        for task, document in by_mode[deferrable].items():  # the extra link names the task's own request
            assert links[task] == f"https://{fal_emulator.host}/_emulator/requests/{document['request_id']}"

    assert fal_emulator.counters()["submissions"]["total"] == 2 * len(CALLS)  # one request per task and mode
    for task_id, document in by_mode[True].items():
        assert document["schema_version"] == 1
        assert stable(document) == stable(by_mode[False][task_id]), task_id

    image = by_mode[True]["image"]
    assert image["kind"] == "sam3.segmentation" and image["image"]["width"] == 96
    assert image["masks"][0]["pixel_box"] == [30.0, 16.0, 62.0, 48.0]
    assert image["masks"][0]["score"] is not None
    rle = by_mode[True]["image_rle"]
    assert rle["rle_size"] == [96, 64] and rle["masks"][0]["rle"]
    embed = by_mode[True]["embed"]
    assert embed["kind"] == "sam3.embedding" and embed["stored_url"].endswith("embedding.bin")
    assert "embedding_b64" not in str(embed)  # a reference, never the blob
    assert {f["field"] for f in by_mode[True]["3d_body"]["files"]} >= {"model_glb", "visualization"}


def test_version_switch_sends_sam31(run_dag, inputs, fal_emulator):
    results = run_dag(SAM31_DAG, **inputs)
    assert results["seg31"][0] == "success"
    assert results["seg31"][1]["endpoint_id"] == "fal-ai/sam-3-1/image"
    assert fal_emulator.counters()["submissions"]["by_endpoint"] == {"fal-ai/sam-3-1/image": 1}


@dag(dag_id="sam3_version_switch", schedule=None, params={"image": "", "video_url": "", "mesh_url": "", "out": ""})
def version_switch():
    ops.SegmentImageOperator(
        task_id="seg31", image=IMAGE, prompt="square", version="3.1", deferrable=True, poll_interval=0.2
    )


SAM31_DAG = version_switch()


@dag(dag_id="sam3_rle_of_a_url_image", schedule=None, params={"image": ""})
def rle_of_a_url_image():
    ops.SegmentImageRleOperator(task_id="rle", image=IMAGE, prompt="square", deferrable=True, poll_interval=0.2)


RLE_OF_A_URL_IMAGE = rle_of_a_url_image()


def test_rle_of_an_image_given_by_url_carries_the_size_read_from_its_header(run_dag, photo, fal_emulator, capfd):
    """fal's RLE output has no size and URL images are not downloaded: the header gives it, so masks decode."""
    from airflow_provider_sam3.models.results import SegmentationResult

    url = fal_emulator.host_file(photo.read_bytes(), "photo.png", "image/png")
    results = run_dag(RLE_OF_A_URL_IMAGE, image=url)
    assert results["rle"][0] == "success", results
    document = results["rle"][1]
    assert document["image"]["width"] == 96 and document["image"]["height"] == 64
    assert document["rle_size"] == [96, 64]
    mask = SegmentationResult.from_xcom(document).mask_arrays()[0]
    assert mask.shape == (64, 96) and mask[16:48, 30:62].all() and mask.sum() == 32 * 32
    out, err = capfd.readouterr()
    assert "Read the size of" in out + err and "96x64" in out + err
