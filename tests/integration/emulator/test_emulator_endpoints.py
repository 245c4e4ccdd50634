"""Every registry endpoint answers schema-valid outputs; the SAM 3 image apps answer what fal's do."""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile

import fal_client
import numpy as np
import pytest
from emulator_helpers import box_mask, iou, png_data_uri, raw_client, squares_image
from PIL import Image

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.media.embedding import embedding_array
from airflow_provider_sam3.media.masks import mask_from_image
from airflow_provider_sam3.media.rle import rle_decode
from airflow_provider_sam3.testing.emulator import apps

WIDTH, HEIGHT = 160, 120
SQUARE = (40, 30, 120, 90)
IMAGE = png_data_uri(squares_image(WIDTH, HEIGHT, [SQUARE]))
VIDEO = "data:video/mp4;base64," + base64.b64encode(b"\x00\x00\x00\x18ftypisom").decode()


def _valid_input(kind: str, mesh_url: str) -> dict:
    image_prompts = {"image_url": IMAGE, "prompt": "square", "include_scores": True, "include_boxes": True}
    return {
        "image": image_prompts,
        "image-rle": image_prompts,
        "embed": {"image_url": IMAGE},
        "video": {"video_url": VIDEO, "prompt": "person, cloth", "video_output_type": "VP9 (.webm)"},
        "video-rle": {"video_url": VIDEO, "prompt": "person", "boundingbox_zip": True},
        "video-rle-objects": {"video_url": VIDEO, "prompt": "car"},
        "3d-objects": {
            "image_url": IMAGE,
            "prompt": "",
            "box_prompts": [{"x_min": 30, "y_min": 20, "x_max": 130, "y_max": 100}],
        },
        "3d-body": {"image_url": IMAGE},
        "3d-align": {"image_url": IMAGE, "body_mesh_url": mesh_url, "object_mesh_url": mesh_url},
    }[kind]


def _files(value):
    if isinstance(value, dict):
        if isinstance(value.get("url"), str) and "content_type" in value:
            yield value
        for item in value.values():
            yield from _files(item)
    elif isinstance(value, list):
        for item in value:
            yield from _files(item)


def test_every_registry_endpoint_output_parses_and_its_files_download(fal_emulator):
    fal_emulator.configure(concurrency=len(ENDPOINTS))
    mesh_url = fal_emulator.host_file(b"ply\nformat ascii 1.0\nend_header\n", "body.ply", "application/octet-stream")

    async def run_all() -> dict[str, dict]:
        client = fal_client.AsyncClient()
        calls = [client.subscribe(e.endpoint_id, arguments=_valid_input(e.kind, mesh_url)) for e in ENDPOINTS.values()]
        results = await asyncio.gather(*calls)
        return dict(zip(ENDPOINTS, results))

    results = asyncio.run(run_all())
    with raw_client(fal_emulator) as http:
        for endpoint_id, result in results.items():
            endpoint = ENDPOINTS[endpoint_id]
            endpoint.parse_output(result)
            for file in _files(result):
                response = http.get(file["url"])
                assert response.status_code == 200, (endpoint_id, file)
                assert response.headers["content-type"].split(";")[0] == file["content_type"]
                assert len(response.content) == file["file_size"]
    assert fal_emulator.counters()["submissions"]["total"] == len(ENDPOINTS)

    for version in ("sam-3", "sam-3-1"):
        body = results[f"fal-ai/{version}/video-rle"]
        masks = [rle_decode(r, apps.VIDEO_FRAME_WIDTH, apps.VIDEO_FRAME_HEIGHT) for r in body["rle"]]
        assert len(masks) == apps.VIDEO_NUM_FRAMES and masks[0].any() and body["rle"][-1] == ""
        assert body["boxes"][-1] is None and body["scores"] == [None] * apps.VIDEO_NUM_FRAMES
    objects = results["fal-ai/sam-3/video-rle-objects"]
    assert [len(f["objects"]) for f in objects["frames"]] == [1, 1, 2, 2, 2, 2, 2, 0]
    assert (objects["width"], objects["height"]) == (apps.VIDEO_FRAME_WIDTH, apps.VIDEO_FRAME_HEIGHT)
    assert results["fal-ai/sam-3/video"]["video"]["content_type"] == "video/webm"
    person = results["fal-ai/sam-3/3d-body"]["metadata"]["people"][0]
    assert len(person["keypoints_2d"]) == 70 and len(person["keypoints_3d"]) == 70
    assert person["bbox"] == [40.0, 30.0, 120.0, 90.0]
    embedding = embedding_array(
        results["fal-ai/sam-3/image/embed"]["embedding_b64"], dtype=apps.EMBEDDING_DTYPE, shape=apps.EMBEDDING_SHAPE
    )
    assert np.isfinite(embedding).all() and embedding.std() > 0
    assert "scene_glb" in results["fal-ai/sam-3/3d-align"]


def test_glb_and_zip_placeholders_are_well_formed(fal_emulator):
    result = fal_client.subscribe("fal-ai/sam-3/3d-objects", arguments={"image_url": IMAGE, "prompt": "car"})
    with raw_client(fal_emulator) as http:
        glb = http.get(result["model_glb"]["url"]).content
        archive = zipfile.ZipFile(io.BytesIO(http.get(result["artifacts_zip"]["url"]).content))
    assert glb[:4] == b"glTF" and int.from_bytes(glb[4:8], "little") == 2
    assert int.from_bytes(glb[8:12], "little") == len(glb) and glb[16:20] == b"JSON"
    assert archive.namelist() == ["metadata.json"]


def test_image_masks_are_the_object_at_the_input_size_with_boxes_and_preview(fal_emulator):
    result = fal_client.subscribe("fal-ai/sam-3/image", arguments=_valid_input("image", ""))
    [mask_file] = result["masks"]
    with raw_client(fal_emulator) as http:
        mask = mask_from_image(http.get(mask_file["url"]).content)
        preview = Image.open(io.BytesIO(http.get(result["image"]["url"]).content))
    assert mask.shape == (HEIGHT, WIDTH) and iou(mask, box_mask(WIDTH, HEIGHT, SQUARE)) > 0.95
    assert preview.size == (WIDTH, HEIGHT)
    assert result["boxes"] == [pytest.approx([0.5, 0.5, 0.5, 0.5], abs=0.02)]
    assert result["metadata"] == [{"index": 0, "score": result["scores"][0], "box": result["boxes"][0]}]
    assert 0 < result["scores"][0] < 1


def test_multiple_masks_sync_mode_and_formats(fal_emulator):
    boxes = [(10, 10, 60, 50), (80, 40, 150, 110)]
    image = png_data_uri(squares_image(WIDTH, HEIGHT, boxes))
    arguments = {
        "image_url": image,
        "prompt": "box",
        "return_multiple_masks": True,
        "max_masks": 5,
        "sync_mode": True,
        "output_format": "webp",
        "apply_mask": False,
    }
    result = fal_client.subscribe("fal-ai/sam-3/image", arguments=arguments)
    assert "image" not in result and len(result["masks"]) == 2
    assert all(m["url"].startswith("data:image/webp;base64,") for m in result["masks"])
    assert {m["content_type"] for m in result["masks"]} == {"image/webp"}
    first = mask_from_image(base64.b64decode(result["masks"][0]["url"].split(",", 1)[1]))
    assert iou(first, box_mask(WIDTH, HEIGHT, boxes[1])) > 0.9

    rle = fal_client.subscribe("fal-ai/sam-3/image-rle", arguments={**arguments, "sync_mode": False})
    assert isinstance(rle["rle"], list) and len(rle["rle"]) == 2
    assert iou(rle_decode(rle["rle"][1], WIDTH, HEIGHT), box_mask(WIDTH, HEIGHT, boxes[0])) > 0.9
    jpeg_args = {"image_url": image, "prompt": "x", "output_format": "jpeg"}
    jpeg = fal_client.subscribe("fal-ai/sam-3/image", arguments=jpeg_args)
    assert jpeg["masks"][0]["content_type"] == jpeg["image"]["content_type"] == "image/jpeg"


def test_point_and_box_prompts_reach_the_segmenter(fal_emulator):
    image = png_data_uri(squares_image(WIDTH, HEIGHT, [(10, 10, 60, 50), (80, 40, 150, 110)]))
    by_point = fal_client.subscribe(
        "fal-ai/sam-3/image-rle",
        arguments={"image_url": image, "prompt": "", "point_prompts": [{"x": 30, "y": 30, "label": 1}]},
    )
    assert iou(rle_decode(by_point["rle"], WIDTH, HEIGHT), box_mask(WIDTH, HEIGHT, (10, 10, 60, 50))) > 0.9
    by_box = fal_client.subscribe(
        "fal-ai/sam-3/image-rle",
        arguments={
            "image_url": image,
            "prompt": "",
            "box_prompts": [{"x_min": 70, "y_min": 30, "x_max": 159, "y_max": 119}],
        },
    )
    assert iou(rle_decode(by_box["rle"], WIDTH, HEIGHT), box_mask(WIDTH, HEIGHT, (80, 40, 150, 110))) > 0.9


def test_max_masks_out_of_range_is_an_app_422_naming_the_field(fal_emulator):
    handle = fal_client.submit("fal-ai/sam-3/image", arguments={"image_url": IMAGE, "prompt": "x", "max_masks": 40})
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()
    assert raised.value.status_code == 422 and "max_masks" in str(raised.value)
    [detail] = raised.value.response.json()["detail"]
    assert detail["loc"] == ["body", "max_masks"] and detail["type"] == "less_than_equal"
    status = handle.status()
    assert isinstance(status, fal_client.Completed) and "max_masks" in status.error
    assert fal_emulator.counters()["submissions"]["total"] == 1


def test_image_rle_with_nothing_found_is_422_no_masks_generated(fal_emulator):
    flat = png_data_uri(Image.new("RGB", (64, 48), (128, 128, 128)))
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        fal_client.subscribe("fal-ai/sam-3/image-rle", arguments={"image_url": flat, "prompt": "wheel"})
    assert raised.value.status_code == 422 and "No masks generated" in raised.value.message
    empty = fal_client.subscribe("fal-ai/sam-3/image", arguments={"image_url": flat, "prompt": "wheel"})
    assert empty["masks"] == [] and empty["image"]["width"] == 64


@pytest.mark.parametrize(
    "url", ["https://example.com/truck.jpg", "http://localhost:1/a.png", "https://127.0.0.1:1/nothing.png"]
)
def test_unreachable_image_url_is_422_could_not_download(fal_emulator, url):
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        fal_client.subscribe("fal-ai/sam-3/image", arguments={"image_url": url, "prompt": "x"})
    [detail] = raised.value.response.json()["detail"]
    assert raised.value.status_code == 422 and detail["loc"] == ["body", "image_url"]
    assert "could not download image_url" in detail["msg"]


def test_undecodable_image_and_non_json_body_are_422(fal_emulator):
    garbage = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        fal_client.subscribe("fal-ai/sam-3/image/embed", arguments={"image_url": garbage})
    assert raised.value.status_code == 422 and "could not decode image_url" in str(raised.value)
    with raw_client(fal_emulator) as http:
        submitted = http.post("/fal-ai/sam-3/image", content=b"{not json", headers={"content-type": "application/json"})
        request_id = submitted.json()["request_id"]
    with pytest.raises(fal_client.FalClientHTTPError) as invalid:
        fal_client.result("fal-ai/sam-3/image", request_id)
    assert invalid.value.status_code == 422
