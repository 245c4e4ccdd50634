"""The SAM 3 apps behind the emulator's queue: one per registry kind, every endpoint of that kind served by it.

Inputs are validated with the registry's own input model (a failure is the app's 422, as on fal). Image kinds
run the classical ``segmenter``; the others return deterministic, schema-valid outputs with placeholder files.

Fixed facts callers may rely on:

- ``image/embed`` returns ``EMBEDDING_SHAPE`` = (32, 16, 16) values of dtype ``EMBEDDING_DTYPE`` = ``"<f4"``
  (little-endian float32, C order, base64): 8 pooled image features (R, G, B, gray, x and y gradients, gradient
  magnitude, saturation on a 16x16 grid) each passed through sin(k * pi * v) for k = 1..4 (channel = 8 * (k - 1) + f).
- Video kinds do not decode the video: frames are ``VIDEO_FRAME_WIDTH`` x ``VIDEO_FRAME_HEIGHT`` pixels,
  ``VIDEO_NUM_FRAMES`` of them. ``video-rle`` returns one RLE per frame with the last frame empty (``""``, box
  ``None``) and all scores ``None``; ``video-rle-objects`` tracks 2 objects, track 1 absent from frames 0 and 1, and
  no object in the last frame.
- ``3d-body`` finds one person (the largest salient region, or the central half of the image) with
  ``len(KEYPOINT_NAMES)`` = 70 keypoints.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from PIL import Image
from pydantic import ValidationError

from airflow_provider_sam3.endpoints import ENDPOINTS, Endpoint
from airflow_provider_sam3.media.boxes import mask_box
from airflow_provider_sam3.media.embedding import encode_embedding
from airflow_provider_sam3.media.render import encode_png, overlay
from airflow_provider_sam3.media.rle import rle_encode
from airflow_provider_sam3.testing.emulator import placeholders
from airflow_provider_sam3.testing.emulator.app_files import (
    AppContext,
    PendingFile,
    load_image,
    normalized_box,
    publish,
)
from airflow_provider_sam3.testing.emulator.fetch import fetch_bytes
from airflow_provider_sam3.testing.emulator.image_app import segment_image
from airflow_provider_sam3.testing.emulator.results import INVALID_JSON, AppError, AppResult, validation_failed
from airflow_provider_sam3.testing.emulator.segmenter import segment

__all__ = [
    "APPS",
    "App",
    "EMBEDDING_DTYPE",
    "EMBEDDING_SHAPE",
    "KEYPOINT_NAMES",
    "NOT_JSON",
    "VIDEO_FRAME_HEIGHT",
    "VIDEO_FRAME_WIDTH",
    "VIDEO_NUM_FRAMES",
    "align_body",
    "embed_image",
    "embedding_of",
    "reconstruct_body",
    "reconstruct_objects",
    "run_app",
    "segment_video",
    "segment_video_objects",
    "segment_video_rle",
]

EMBEDDING_DTYPE = "<f4"
EMBEDDING_SHAPE = (32, 16, 16)
VIDEO_FRAME_WIDTH = 64
VIDEO_FRAME_HEIGHT = 48
VIDEO_NUM_FRAMES = 8
KEYPOINT_NAMES = tuple(f"keypoint_{i:02d}" for i in range(70))


def embedding_of(image: Image.Image) -> np.ndarray:
    """The emulator's deterministic embedding of ``image``: ``EMBEDDING_SHAPE`` float32 values (see module doc)."""
    size = EMBEDDING_SHAPE[:0:-1]
    grid = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BOX), dtype=np.float32) / 255
    gray = grid.mean(axis=2)
    gy, gx = np.gradient(gray)
    hsv = np.asarray(image.convert("HSV").resize(size, Image.Resampling.BOX), dtype=np.float32) / 255
    saturation = hsv[..., 1]
    features = np.stack([grid[..., 0], grid[..., 1], grid[..., 2], gray, gx, gy, np.hypot(gx, gy), saturation])
    channels = [np.sin(k * math.pi * features) for k in range(1, EMBEDDING_SHAPE[0] // len(features) + 1)]
    return np.concatenate(channels).astype(EMBEDDING_DTYPE)


async def embed_image(inputs: Any, ctx: AppContext) -> Any:
    image = await load_image(inputs.image_url, "image_url", ctx)
    array = await asyncio.to_thread(embedding_of, image)
    return {"embedding_b64": encode_embedding(array)}


def _track_mask(track: int, frame: int) -> np.ndarray | None:
    """Object ``track`` in video frame ``frame``: a rectangle drifting right, or ``None`` when absent."""
    if frame == VIDEO_NUM_FRAMES - 1 or (track == 1 and frame < 2):
        return None
    mask = np.zeros((VIDEO_FRAME_HEIGHT, VIDEO_FRAME_WIDTH), dtype=bool)
    x, y = 2 + 3 * frame, 4 + 22 * track
    mask[y : y + 16, x + 20 * track : x + 20 * track + 12] = True
    return mask


async def _check_urls(inputs: Any, ctx: AppContext, *fields: str) -> None:
    for field in fields:
        value = getattr(inputs, field, None)
        for url in value if isinstance(value, list) else [value] if value else []:
            await fetch_bytes(url, field, ctx)


async def segment_video(inputs: Any, ctx: AppContext) -> Any:
    await _check_urls(inputs, ctx, "video_url")
    data, content_type, extension = placeholders.video(inputs.video_output_type)
    return publish({"video": PendingFile(data, f"segmented.{extension}", content_type)}, ctx)


async def segment_video_rle(inputs: Any, ctx: AppContext) -> Any:
    await _check_urls(inputs, ctx, "video_url", "mask_url")
    merged = []
    for frame in range(VIDEO_NUM_FRAMES):
        mask = np.zeros((VIDEO_FRAME_HEIGHT, VIDEO_FRAME_WIDTH), dtype=bool)
        for track in (0, 1):
            part = _track_mask(track, frame)
            if part is not None:
                mask |= part
        merged.append(mask)
    boxes = [normalized_box(m) for m in merged]
    body: dict[str, Any] = {"rle": [rle_encode(m) for m in merged], "boxes": boxes, "scores": [None] * len(merged)}
    if inputs.boundingbox_zip:
        files = {f"frame_{i:05d}.json": json.dumps({"box": box}).encode() for i, box in enumerate(boxes)}
        archive = placeholders.zip_of(files)
        body["boundingbox_frames_zip"] = PendingFile(archive, "boxes.zip", placeholders.ZIP_CONTENT_TYPE)
    return publish(body, ctx)


async def segment_video_objects(inputs: Any, ctx: AppContext) -> Any:
    await _check_urls(inputs, ctx, "video_url")
    frames = []
    for frame in range(VIDEO_NUM_FRAMES):
        objects = [
            {"track_id": track, "rle": rle_encode(mask)}
            for track in (0, 1)
            if (mask := _track_mask(track, frame)) is not None
        ]
        frames.append({"frame_index": frame, "objects": objects})
    return {"frames": frames, "width": VIDEO_FRAME_WIDTH, "height": VIDEO_FRAME_HEIGHT, "num_frames": VIDEO_NUM_FRAMES}


def _object_count(inputs: Any) -> int:
    keys = {("box", i) if b.object_id is None else ("id", b.object_id) for i, b in enumerate(inputs.box_prompts)}
    keys |= {("id", p.object_id) for p in inputs.point_prompts if int(p.label) == 1}
    return max(1, len(keys), len(inputs.mask_urls or []))


async def reconstruct_objects(inputs: Any, ctx: AppContext) -> Any:
    await load_image(inputs.image_url, "image_url", ctx)
    await _check_urls(inputs, ctx, "mask_urls", "pointmap_url")
    count = _object_count(inputs)
    metadata = [
        {
            "object_index": i,
            "camera_pose": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
            "rotation": [[1.0, 0.0, 0.0, 0.0]],
            "scale": [[1.0, 1.0, 1.0]],
            "translation": [[0.5 * i, 0.0, 2.5]],
        }
        for i in range(count)
    ]
    glb, ply, zip_type = placeholders.GLB_CONTENT_TYPE, placeholders.PLY_CONTENT_TYPE, placeholders.ZIP_CONTENT_TYPE
    artifacts = placeholders.zip_of({"metadata.json": json.dumps(metadata).encode()})
    body = {
        "gaussian_splat": PendingFile(placeholders.ply(), "splat.ply", ply),
        "model_glb": PendingFile(placeholders.glb({"objects": count}), "scene.glb", glb),
        "metadata": metadata,
        "individual_glbs": [PendingFile(placeholders.glb({"object": i}), f"object_{i}.glb", glb) for i in range(count)],
        "individual_splats": [PendingFile(placeholders.ply(), f"object_{i}.ply", ply) for i in range(count)],
        "artifacts_zip": PendingFile(artifacts, "artifacts.zip", zip_type),
    }
    return publish(body, ctx)


def _person(image: Image.Image, inputs: Any) -> tuple[dict[str, Any], np.ndarray]:
    width, height = image.size
    found = segment(image, prompt="person")
    if found:
        mask = found[0].mask
    else:
        mask = np.zeros((height, width), dtype=bool)
        top, left = height // 4, width // 4
        mask[top : max(top + 1, 3 * height // 4), left : max(left + 1, 3 * width // 4)] = True
    box = mask_box(mask)
    assert box is not None  # the mask is never empty: segment's first mask, else the filled central block
    x0, y0, x1, y1 = box
    keypoints = [[x0 + (x1 - x0) * ((k % 7) + 0.5) / 7, y0 + (y1 - y0) * ((k // 7) + 0.5) / 10] for k in range(70)]
    person: dict[str, Any] = {
        "person_id": 0,
        "bbox": [float(x0), float(y0), float(x1), float(y1)],
        "focal_length": float(max(width, height)) * 1.2,
        "pred_cam_t": [0.0, 0.0, 2.5],
        "keypoints_2d": [[round(x, 3), round(y, 3)] for x, y in keypoints],
    }
    if inputs.include_3d_keypoints:
        person["keypoints_3d"] = [
            [round((x - width / 2) / width, 4), round((y - height / 2) / height, 4), 2.5] for x, y in keypoints
        ]
    if inputs.include_mhr_params:
        person.update(
            shape_params=[0.0] * 10,
            body_pose_params=[0.0] * 63,
            hand_pose_params=[0.0] * 30,
            global_rot=[0.0, 0.0, 0.0],
            scale_params=[1.0],
            expr_params=[0.0] * 10,
        )
    return person, mask


async def reconstruct_body(inputs: Any, ctx: AppContext) -> Any:
    image = await load_image(inputs.image_url, "image_url", ctx)
    await _check_urls(inputs, ctx, "mask_url")
    person, mask = await asyncio.to_thread(_person, image, inputs)
    visualization = await asyncio.to_thread(lambda: encode_png(overlay(image, [mask])))
    body: dict[str, Any] = {
        "model_glb": PendingFile(placeholders.glb({"people": 1}), "body.glb", placeholders.GLB_CONTENT_TYPE),
        "visualization": PendingFile(visualization, "visualization.png", "image/png", image.width, image.height),
        "metadata": {"num_people": 1, "people": [person], "keypoint_names": list(KEYPOINT_NAMES)},
    }
    if inputs.export_meshes:
        body["meshes"] = [PendingFile(placeholders.ply(), "person_0.ply", placeholders.PLY_CONTENT_TYPE)]
    return publish(body, ctx)


async def align_body(inputs: Any, ctx: AppContext) -> Any:
    image = await load_image(inputs.image_url, "image_url", ctx)
    await _check_urls(inputs, ctx, "body_mesh_url", "body_mask_url", "object_mesh_url")
    focal = inputs.focal_length or float(max(image.size)) * 1.2
    picture = await asyncio.to_thread(encode_png, image)
    body: dict[str, Any] = {
        "body_mesh_ply": PendingFile(placeholders.ply(), "body_aligned.ply", placeholders.PLY_CONTENT_TYPE),
        "model_glb": PendingFile(placeholders.glb({"aligned": True}), "aligned.glb", placeholders.GLB_CONTENT_TYPE),
        "visualization": PendingFile(picture, "visualization.png", "image/png", image.width, image.height),
        "metadata": {
            "person_id": 0,
            "scale_factor": 1.0,
            "translation": [0.0, 0.0, 2.5],
            "focal_length": focal,
            "cropped_vertices_count": 4,
            "target_points_count": 4,
        },
    }
    if inputs.object_mesh_url:
        body["scene_glb"] = PendingFile(placeholders.glb({"scene": True}), "scene.glb", placeholders.GLB_CONTENT_TYPE)
    return publish(body, ctx)


App = Callable[[Any, AppContext], Awaitable[Any]]

APPS: dict[str, App] = {
    "image": segment_image,
    "image-rle": lambda inputs, ctx: segment_image(inputs, ctx, rle=True),
    "embed": embed_image,
    "video": segment_video,
    "video-rle": segment_video_rle,
    "video-rle-objects": segment_video_objects,
    "3d-objects": reconstruct_objects,
    "3d-body": reconstruct_body,
    "3d-align": align_body,
}

_missing = {e.kind for e in ENDPOINTS.values()} - set(APPS)
if _missing:
    raise RuntimeError(f"the emulator has no app for registry kinds {sorted(_missing)}")

NOT_JSON = object()
"""Marker for a submit body that was not JSON."""


async def run_app(endpoint: Endpoint, arguments: Any, ctx: AppContext) -> AppResult:
    """Run ``endpoint``'s app on ``arguments``: 200 with the output, or the app's own error result."""
    if arguments is NOT_JSON:
        return INVALID_JSON
    try:
        inputs = endpoint.input_model.model_validate(arguments)
    except ValidationError as error:
        return validation_failed(error)
    try:
        return AppResult(200, await APPS[endpoint.kind](inputs, ctx))
    except AppError as error:
        return error.result
