"""Images listed as the batch lists them, for DAGs that choose images themselves (only new photos, one task per
image): a folder, a glob, a list, or object-storage locations, in the batch's stable order."""

from __future__ import annotations

from typing import Any

__all__ = ["list_images"]


def list_images(images: Any, *, field_name: str = "images") -> list[str]:
    """The image locations ``images`` names, in the order a batch takes them (what ``Sam3BatchOperator`` accepts as
    ``images``); ``InputValidationError`` naming ``field_name`` and the item when one is unusable."""
    from airflow_provider_sam3.batch.listing import resolve_images

    return [image.source for image in resolve_images(images, field_name=field_name)]
