"""The File and Image objects fal returns for every generated artefact."""

from __future__ import annotations

from airflow_provider_sam3.models.base import EndpointOutput

__all__ = ["File", "ImageFile"]


class File(EndpointOutput):
    """A file fal stores for a while: download it before its URL expires."""

    url: str
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None


class ImageFile(File):
    """A file that is an image, with its pixel size when fal reports it."""

    width: int | None = None
    height: int | None = None
