"""The XCom result documents: small, versioned JSON that every SAM 3 task returns.

An operator returns ``build_result(...).model_dump(mode="json")``: a plain dict, so downstream tasks, Jinja
templates and SQL read it with no Airflow serde configuration, the same under ``dag.test()`` and real runs. Bytes
never go into a document: masks, previews, videos, meshes and embeddings are referenced by URL (fal's, temporary)
and by ``stored_url`` (the copy in the user's storage, written by ``storage.outputs.copy_outputs``).

Three kinds, one header (``schema_version``, ``kind``, ``endpoint_id``, ``request_id``, ``cost_usd``, ``timings``,
``image``, ``output_location``):

- ``sam3.segmentation`` (image, image-rle): one entry per mask with score, fal's normalized box and the pixel box.
- ``sam3.embedding`` (image/embed): where the embedding bytes were written, their size and sha256; never the blob.
- ``sam3.files`` (video, video-rle, video-rle-objects, 3D): every File in the output plus its JSON metadata.

Pure: pydantic here; numpy and Pillow are imported inside the helpers that decode masks or embeddings.

Three modules do the work: ``document_fields`` (header, parts, version), ``documents`` (the three kinds and their
readers) and ``document_builder`` (from fal's output to a document). This module is where users import them from.
"""

from __future__ import annotations

from airflow_provider_sam3.guards.files import local_path
from airflow_provider_sam3.models.document_builder import build_result
from airflow_provider_sam3.models.document_fields import (
    INLINE_DATA_LIMIT,
    KIND_EMBEDDING,
    KIND_FILES,
    KIND_SEGMENTATION,
    SCHEMA_VERSION,
    Fetch,
    FileEntry,
    ImageInfo,
    MaskEntry,
    ResultDocumentError,
    Timings,
)
from airflow_provider_sam3.models.documents import (
    DOCUMENT_CLASSES,
    EmbeddingResult,
    FilesResult,
    ResultDocument,
    SegmentationResult,
    result_from_xcom,
)

__all__ = [
    "DOCUMENT_CLASSES",
    "INLINE_DATA_LIMIT",
    "KIND_EMBEDDING",
    "KIND_FILES",
    "KIND_SEGMENTATION",
    "SCHEMA_VERSION",
    "EmbeddingResult",
    "Fetch",
    "FileEntry",
    "FilesResult",
    "ImageInfo",
    "MaskEntry",
    "ResultDocument",
    "ResultDocumentError",
    "SegmentationResult",
    "Timings",
    "build_result",
    "local_path",
    "result_from_xcom",
]
