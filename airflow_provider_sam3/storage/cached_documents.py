"""Result documents to and from result cache entries, one implementation for the single-image operators and the
batch: a hit's document is built from the cached fal result body exactly as a live one is
(``models.results.build_result``), its files copied under ``output_path`` from the cache
(``storage.outputs.copy_outputs``); a paid result is kept as fal's body, the reference of the request that paid,
and every output file under a name of the cache's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import Sam3ProviderError

if TYPE_CHECKING:
    from airflow_provider_sam3.models.documents import ResultDocument
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.storage.result_cache import CachedResult, ResultCache

__all__ = ["document_from_cache", "keep_result"]


def document_from_cache(
    hit: CachedResult, *, endpoint_id: str, image: dict[str, Any] | None, output_path: Any, log: Any
) -> ResultDocument | None:
    """The document of a cache entry for a request to ``endpoint_id`` (its files copied under ``output_path``),
    with its ``cache`` note; ``None`` when the entry is another endpoint's or its body cannot be read as the
    endpoint's result (said in the log: it is then a miss)."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.models.document_fields import CacheNote
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.results import build_result
    from airflow_provider_sam3.storage.outputs import copy_outputs

    endpoint = ENDPOINTS.get(hit.endpoint_id)
    try:
        if hit.endpoint_id != endpoint_id or endpoint is None:
            raise ValueError(f"it holds a result of {hit.endpoint_id[:80]!r}, not of {endpoint_id}")
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
            result = copy_outputs(
                result, output_path, download=hit.read, output_json=output, keep_existing_document=True
            )
        else:
            _point_at_the_cache(result, hit)
    except (Sam3ProviderError, ValueError, TypeError) as error:  # e.g. a request id that would leave output_path
        log.warning("result cache entry %s cannot be used (%s); sending the request instead", hit.key, error)
        return None
    result.cache = CacheNote(key=hit.key, hit=True, request_id=hit.request_id, saved_usd=hit.cost_usd)
    return result


def _point_at_the_cache(result: ResultDocument, hit: CachedResult) -> None:
    """Without an ``output_path``, a hit's files are the cache's own copies (fal's URLs of the request that paid
    may have expired): each file entry's ``stored_url`` names one, and ``output_location`` their folder."""
    from airflow_provider_sam3.storage.outputs import file_entries

    def location(path: Any) -> str:
        return path.as_uri() if hasattr(path, "as_uri") and not hasattr(path, "protocol") else str(path)

    for entry in file_entries(result):
        name = hit.sources.get(entry.url or "")
        if name is not None:
            entry.stored_url = location(hit.files[name])
            result.output_location = location(hit.files[name].parent)


def keep_result(
    cache: ResultCache,
    key: str,
    *,
    reference: RequestReference,
    output: Any,
    metrics: dict[str, Any] | None,
    urls: list[str],
    read: Callable[[str], bytes],
    cost_usd: float | None,
) -> CachedResult | None:
    """Add a paid result to the cache: fal's body, the reference, and each output file (``read(url)`` gives its
    bytes). ``None`` when the cache's mode does not write."""
    files: dict[str, bytes] = {}
    sources: dict[str, str] = {}
    for number, url in enumerate(urls):
        name = f"file_{number:03d}"
        files[name] = read(url)
        sources[url] = name
    return cache.put(
        key,
        endpoint_id=reference.endpoint_id,
        request_id=reference.request_id,
        payload={"output": output, "reference": reference.to_dict(), "metrics": metrics or {}},
        files=files,
        sources=sources,
        cost_usd=cost_usd,
    )


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"its {field} is not a mapping")
    return value
