"""Inputs and outputs of the SAM 3 3D endpoints: 3d-objects, 3d-body and 3d-align."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from airflow_provider_sam3.models.base import EndpointInput, EndpointOutput, FileUrl
from airflow_provider_sam3.models.files import File
from airflow_provider_sam3.models.image import ExplicitPromptMixin
from airflow_provider_sam3.models.prompts import BoxPromptBase, PointPromptBase, TextPrompt, Threshold

__all__ = [
    "Align3DInput",
    "Align3DOutput",
    "AlignmentInfo",
    "BodyMetadata",
    "BodyPerson",
    "ObjectPose",
    "Reconstruct3DBodyInput",
    "Reconstruct3DBodyOutput",
    "Reconstruct3DObjectsInput",
    "Reconstruct3DObjectsOutput",
]


class Reconstruct3DObjectsInput(ExplicitPromptMixin):
    """Input of ``fal-ai/sam-3/3d-objects``: reconstruct the prompted objects of one image in 3D."""

    server_default_prompt: ClassVar[str] = "car"

    image_url: FileUrl
    mask_urls: list[FileUrl] | None = None
    prompt: TextPrompt
    point_prompts: list[PointPromptBase] = Field(default_factory=list)
    box_prompts: list[BoxPromptBase] = Field(default_factory=list)
    detection_threshold: Threshold | None = None
    seed: int | None = None
    pointmap_url: FileUrl | None = None
    export_textured_glb: bool = False


class ObjectPose(EndpointOutput):
    """Pose of one reconstructed object; fal sends the inner values as nested float lists."""

    object_index: int
    camera_pose: list[Any] | None = None
    rotation: list[Any] | None = None
    scale: list[Any] | None = None
    translation: list[Any] | None = None


class Reconstruct3DObjectsOutput(EndpointOutput):
    """Output of ``/3d-objects``: a gaussian splat, optional GLB meshes, and per-object poses."""

    gaussian_splat: File
    model_glb: File | None = None
    metadata: list[ObjectPose]
    individual_glbs: list[File] | None = None
    individual_splats: list[File] | None = None
    artifacts_zip: File | None = None


class Reconstruct3DBodyInput(EndpointInput):
    """Input of ``fal-ai/sam-3/3d-body``: people in one image as meshes and keypoints."""

    image_url: FileUrl
    mask_url: FileUrl | None = None
    export_meshes: bool = True
    include_3d_keypoints: bool = True
    include_mhr_params: bool = True


class BodyPerson(EndpointOutput):
    """One person: box in pixel corners, camera, and 70 MHR keypoints; model parameters kept as given."""

    person_id: int
    bbox: list[float]
    focal_length: float
    pred_cam_t: list[float]
    keypoints_2d: list[list[float]]
    keypoints_3d: list[list[float]] | None = None
    shape_params: list[Any] | None = None
    body_pose_params: list[Any] | None = None
    hand_pose_params: list[Any] | None = None
    global_rot: list[Any] | None = None
    pred_global_rots: list[Any] | None = None
    scale_params: list[Any] | None = None
    expr_params: list[Any] | None = None
    pred_joint_coords: list[Any] | None = None
    mhr_model_params: list[Any] | None = None
    pred_pose_raw: list[Any] | None = None


class BodyMetadata(EndpointOutput):
    """The people found in the image and the names of the keypoints, index for index."""

    num_people: int
    people: list[BodyPerson]
    keypoint_names: list[str] | None = None


class Reconstruct3DBodyOutput(EndpointOutput):
    """Output of ``/3d-body``."""

    model_glb: File
    visualization: File
    meshes: list[File] | None = None
    metadata: BodyMetadata


class Align3DInput(EndpointInput):
    """Input of ``fal-ai/sam-3/3d-align``: align a body mesh (and optionally an object mesh) to the image."""

    image_url: FileUrl
    body_mesh_url: FileUrl
    body_mask_url: FileUrl | None = None
    object_mesh_url: FileUrl | None = None
    focal_length: float | None = Field(default=None, gt=0)


class AlignmentInfo(EndpointOutput):
    """How the body mesh was aligned."""

    person_id: int
    scale_factor: float
    translation: list[float]
    focal_length: float
    cropped_vertices_count: int
    target_points_count: int


class Align3DOutput(EndpointOutput):
    """Output of ``/3d-align``."""

    body_mesh_ply: File
    model_glb: File
    visualization: File
    scene_glb: File | None = None
    metadata: AlignmentInfo
