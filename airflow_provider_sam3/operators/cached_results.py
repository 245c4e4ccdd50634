"""The result cache on the single-image path: look a request up before it is sent, keep a paid result after.

A hit sends nothing: the document is built from the cached fal result body exactly as from a live one
(``models.results.build_result``) and its files are copied under ``output_path`` from the cache
(``storage.outputs.copy_outputs``), so a hit and a miss give the same document, apart from its ``cache`` note. The
entry holds fal's result body (checked again by the endpoint's output model when read), the reference of the request
that paid, and every output file, read back from the task's own copies (or fetched from fal when there is no
``output_path``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import Sam3ProviderError

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.documents import ResultDocument
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.operators.request_bodies import PreparedRequest
    from airflow_provider_sam3.storage.result_cache import CachedResult, ResultCache

__all__ = ["CacheSlot", "cache_slot", "document_from_cache", "remember_result"]


@dataclass(frozen=True)
class CacheSlot:
    """Where a request's result is looked up and kept: the cache and the request's key."""

    cache: ResultCache
    key: str


def cache_slot(
    request: PreparedRequest,
    *,
    result_cache: Any,
    mode: str,
    max_age: float | None,
    salt: str | None,
    key_urls: bool,
    log: Any,
) -> CacheSlot | None:
    """The request's slot in the cache, or ``None``: no cache set, an endpoint outside the registry, or an input
    given as a URL that is not keyed (said in the log). Raises ``InputValidationError`` for bad cache settings."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.storage.cache_keys import request_key
    from airflow_provider_sam3.storage.result_cache import ResultCache

    if result_cache in (None, ""):
        return None
    cache = ResultCache(result_cache, mode=mode, max_age=max_age, log=log)
    endpoint = ENDPOINTS.get(request.endpoint_id)
    if endpoint is None:
        log.info("The result cache keeps SAM 3 results only; %s is sent without it", request.endpoint_id)
        return None
    key = request_key(endpoint, request.body, digests=request.stable_fields, key_urls=key_urls, salt=salt)
    if key is None:
        log.info("Not using the result cache: an input is a URL whose bytes may change (set cache_urls=True to key it)")
        return None
    return CacheSlot(cache, key)


def document_from_cache(
    hit: CachedResult, *, image: dict[str, Any] | None, output_path: Any, log: Any
) -> dict[str, Any] | None:
    """The task's document from a cache entry (its files copied under ``output_path``); ``None`` when the entry's
    body cannot be read as the endpoint's result (said in the log: it is then a miss)."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.models.document_fields import CacheNote
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.results import build_result
    from airflow_provider_sam3.storage.outputs import copy_outputs

    endpoint = ENDPOINTS.get(hit.endpoint_id)
    try:
        if endpoint is None:
            raise ValueError(f"its endpoint {hit.endpoint_id!r} is not in the registry")
        reference = RequestReference.from_dict(_mapping(hit.payload.get("reference"), "reference"))
        output = _mapping(hit.payload.get("output"), "output")
        metrics = hit.payload.get("metrics")
        metrics = metrics if isinstance(metrics, dict) else {}
        result = build_result(
            endpoint,
            output,
            reference=reference,
            image=image,
            completed_at=time.time(),
            inference_seconds=metrics.get("inference_time"),
        )
        if output_path is not None:
            result = copy_outputs(result, output_path, download=hit.read, output_json=output)
    except (Sam3ProviderError, ValueError, TypeError) as error:  # e.g. a request id that would leave output_path
        log.warning("result cache entry %s cannot be used (%s); sending the request instead", hit.key, error)
        return None
    result.cache = CacheNote(key=hit.key, hit=True, request_id=hit.request_id, saved_usd=hit.cost_usd)
    log.info(
        "Result cache hit %s: request %s of %s paid for it; nothing was sent%s",
        hit.key[:16],
        hit.request_id,
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(hit.created_at)),
        f", ${hit.cost_usd:.4f} saved" if hit.cost_usd is not None else "",
    )
    return result.model_dump(mode="json")


def remember_result(
    slot: CacheSlot,
    *,
    hook: FalHook,
    reference: RequestReference,
    output: Any,
    result: ResultDocument,
    metrics: dict[str, Any] | None,
    log: Any,
) -> None:
    """Keep a paid result in the cache: fal's body, the reference, every output file (from the task's own copies,
    or fetched from fal without an ``output_path``). A failure is logged, never raised: the task has its result."""
    import logging

    from airflow_provider_sam3.models.document_fields import CacheNote

    log = log or logging.getLogger(__name__)
    from airflow_provider_sam3.storage.outputs import output_urls

    try:
        files: dict[str, bytes] = {}
        sources: dict[str, str] = {}
        for number, url in enumerate(output_urls(result)):
            name = f"file_{number:03d}"
            files[name] = _stored_copy(result, url) or hook.download(url)
            sources[url] = name
        kept = slot.cache.put(
            slot.key,
            endpoint_id=reference.endpoint_id,
            request_id=reference.request_id,
            payload={"output": output, "reference": reference.to_dict(), "metrics": metrics or {}},
            files=files,
            sources=sources,
            cost_usd=result.cost_usd,
        )
    except Exception as error:  # noqa: BLE001 - the result is the task's; the cache is a saving
        log.warning("Could not keep request %s in the result cache (%s)", reference.request_id, error)
        return
    if kept is not None:  # not in read-only mode
        result.cache = CacheNote(key=slot.key, hit=False)


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"its {field} is not a mapping")
    return value


def _stored_copy(result: ResultDocument, url: str) -> bytes | None:
    """The bytes of the task's own copy of ``url``, when it made one."""
    for entry in _entries(result):
        if entry.url == url and entry.stored_url:
            return result.read_stored(entry.stored_url, "cache", read=_read_remote)
    return None


def _entries(result: Any) -> list[Any]:
    return [*getattr(result, "masks", []), *([result.preview] if getattr(result, "preview", None) else [])] + list(
        getattr(result, "files", [])
    )


def _read_remote(location: str) -> bytes:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_sam3.guards.files import read_regular_file
    from airflow_provider_sam3.storage.result_cache import MAX_FILE_BYTES

    return read_regular_file(ObjectStoragePath(location), "cache", MAX_FILE_BYTES, setting=None)
