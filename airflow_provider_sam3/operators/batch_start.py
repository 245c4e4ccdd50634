"""How a batch starts: its endpoint, the fields every image shares, the input limits, and the planned state of a
new batch (``Sam3BatchOperator``'s first try of a run; later tries resume it with ``operators.batch_resume``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.cache import CacheSettings
    from airflow_provider_sam3.batch.inputs import InputLimits
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.batch.options import BatchOptions
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint

__all__ = [
    "BATCH_DEFAULTS",
    "BATCH_KINDS",
    "batch_endpoint",
    "cache_settings",
    "count_answered",
    "input_limits",
    "new_batch_state",
    "shared_arguments",
]

BATCH_KINDS = ("image", "image-rle", "embed")
BATCH_DEFAULTS = {"include_scores": True, "include_boxes": True, "sync_mode": True}
"""Asked for by default (same price): scores and boxes for the manifest, and outputs inline in the result
(``sync_mode``), so storing an image's outputs takes one call to fal instead of one per file, and no URL can
expire before it is copied. ``arguments`` may turn any of them off."""


def batch_endpoint(kind: Any, version: Any) -> Endpoint:
    """The registry's endpoint of a batchable ``kind`` in SAM ``version``."""
    from airflow_provider_sam3.endpoints import endpoint_for

    if kind not in BATCH_KINDS:
        raise InputValidationError("kind", f"{kind!r} cannot be batched", allowed=", ".join(BATCH_KINDS))
    return endpoint_for(kind, str(version))


def shared_arguments(endpoint: Endpoint, arguments: dict[str, Any]) -> dict[str, Any]:
    """The fields every image is sent: ``BATCH_DEFAULTS`` (for segmentation), then the operator's ``arguments``."""
    defaults = BATCH_DEFAULTS if endpoint.kind != "embed" else {}
    return {**defaults, **arguments}


def input_limits(op: Any) -> InputLimits:
    """When an input file is uploaded instead of inlined, and how large one may be."""
    from airflow_provider_sam3.batch.inputs import InputLimits

    return InputLimits(upload_above_bytes=op.upload_above_bytes, max_input_bytes=op.max_input_bytes)


def new_batch_state(op: Any, endpoint: Endpoint, images: list[BatchImage]) -> BatchState:
    """Every listed image validated and planned (``batch.planning.plan_batch``) with the operator's options."""
    from airflow_provider_sam3.batch.planning import plan_batch

    assert op.batch_timeout is not None  # checked before anything runs
    shard = (op.shard_index, op.shard_count) if op.shard_count and op.shard_index is not None else None
    _warn_of_ignored_fields(op, endpoint)
    return plan_batch(
        endpoint,
        images,
        shared=shared_arguments(endpoint, op.arguments),
        limits=input_limits(op),
        timeout=op.batch_timeout,
        skip_invalid=op.skip_invalid,
        shard=shard,
        log=op.log,
    )


def _warn_of_ignored_fields(op: Any, endpoint: Endpoint) -> None:
    """Fields shared by every image that fal would ignore (``max_masks`` without ``return_multiple_masks``)."""
    from airflow_provider_sam3.batch.inputs import PLACEHOLDER_IMAGE_URL
    from airflow_provider_sam3.operators.preflight import ignored_fields_warning

    try:
        body = endpoint.validate_input(
            {**shared_arguments(endpoint, op.arguments), "image_url": PLACEHOLDER_IMAGE_URL}
        ).to_request()
    except (InputValidationError, ValueError):
        return  # the planning names what is wrong, image by image
    warning = ignored_fields_warning(op.arguments, body)
    if warning:
        op.log.warning("%s", warning)


def cache_settings(op: Any, connection_cache: str | None, folder: Any) -> CacheSettings | None:
    """The result cache a batch uses (its own ``result_cache``, else the connection's), or None. Its claims name
    the task's folder, so the task's own retry takes them back."""
    from airflow_provider_sam3.batch.cache import CacheSettings

    root = op.result_cache or connection_cache
    if not root:
        return None
    return CacheSettings(root, op.cache_mode, op.cache_max_age, op.cache_salt, op.cache_urls, owner=str(folder))


def count_answered(op: Any, options: BatchOptions, endpoint: Endpoint, state: BatchState, folder: Any) -> int:
    """How many pending images the result cache answers now (0 without a cache): asked only when the batch's
    estimate is above ``max_cost_usd``, so that only the others count against it."""
    import asyncio

    from airflow_provider_sam3.batch.cache import BatchCache
    from airflow_provider_sam3.hooks.fal import FalHook

    settings = cache_settings(op, FalHook(op.fal_conn_id).get_settings().result_cache, folder)
    if settings is None:
        return 0
    cache = BatchCache(settings, endpoint, state, folder, op.log)
    return asyncio.run(cache.count_answered(state.in_state("pending"), options.shared_arguments, options.limits))
