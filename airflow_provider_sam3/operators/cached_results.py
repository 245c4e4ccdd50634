"""The result cache on the single-image path: look a request up before it is sent, keep a paid result after.

A hit sends nothing and gives the document a miss would have given, apart from its ``cache`` note
(``storage.cached_documents`` builds both). A paid result's files are read back from the task's own copies (or
fetched from fal when there is no ``output_path``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.documents import ResultDocument
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.operators.request_bodies import PreparedRequest
    from airflow_provider_sam3.storage.result_cache import CachedResult, ResultCache

__all__ = [
    "CLAIM_RECHECK_SECONDS",
    "CLAIM_WAIT_SECONDS",
    "CacheSlot",
    "cache_slot",
    "document_from_cache",
    "released_on_failure",
    "remember_result",
    "task_owner",
    "wait_while_claimed",
]


CLAIM_RECHECK_SECONDS = 5.0
"""How often a task on the worker looks again at a key another task is paying for."""
CLAIM_WAIT_SECONDS = 30
"""How long a deferrable task waits off the worker before looking again at a key another task is paying for."""


@dataclass(frozen=True)
class CacheSlot:
    """Where a request's result is looked up and kept: the cache, the request's key, and the task instance that
    claims it before paying (``owner``: its retries take the claim back)."""

    cache: ResultCache
    key: str
    endpoint_id: str
    owner: str | None = None

    def claim(self, lease: float) -> str | None:
        """Claim the key before paying: ``None`` when this task holds it, else the task that does."""
        if self.owner is None or self.cache.mode != "read_write":
            return None
        try:
            return self.cache.claim(self.key, self.owner, lease=lease)
        except OSError:  # a folder that takes no hard links (some FUSE mounts): pay without a claim
            return None

    def release(self) -> None:
        """Drop this task's claim (its result is kept, or it gave up); a claim that cannot be dropped ends with its
        lease."""
        if self.owner is not None and self.cache.mode == "read_write":
            try:
                self.cache.release(self.key, self.owner)
            except OSError:
                pass


@contextmanager
def released_on_failure(slot: CacheSlot | None) -> Iterator[None]:
    """A task that fails after claiming its key pays for nothing more: its claim is dropped, so a task waiting for
    that key pays itself now instead of waiting for the lease (a deferral keeps the claim: the task goes on)."""
    try:
        yield
    except BaseException as error:  # a timeout or a kill too (Airflow's are BaseExceptions)
        from airflow.sdk.exceptions import TaskDeferred

        if slot is not None and not isinstance(error, TaskDeferred):
            slot.release()
        raise


def task_owner(context: Any) -> str:
    """The task instance a claim names: ``<dag_id>/<run_id>/<task_id>/<map_index>``."""
    ti = context.get("ti")
    parts = (getattr(ti, name, None) for name in ("dag_id", "run_id", "task_id", "map_index"))
    return "/".join(str(part) for part in parts)


def wait_while_claimed(op: Any, slot: CacheSlot, image: dict[str, Any] | None, lease: float) -> dict[str, Any] | None:
    """Before paying: claim the key and look once more (the task that held it may have kept its result a moment
    ago); while another task holds it, wait for its result, off the worker when the task is deferrable. The
    document from the cache, or ``None`` when this task is to pay (and holds the claim)."""
    while True:
        holder = slot.claim(lease)
        hit = slot.cache.get(slot.key)
        document = (
            document_from_cache(hit, endpoint_id=slot.endpoint_id, image=image, output_path=op.output_path, log=op.log)
            if hit is not None
            else None
        )
        if document is not None:
            if holder is None:
                slot.release()
            return document
        if holder is None:
            return None
        op.log.info(
            "Another task (%s) is paying for this very request; waiting for its result in the result cache", holder
        )
        if op.deferrable:
            from datetime import timedelta

            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            op.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=CLAIM_WAIT_SECONDS)),
                method_name="execute_after_claim_wait",
            )
        time.sleep(CLAIM_RECHECK_SECONDS)


def cache_slot(
    request: PreparedRequest,
    *,
    result_cache: Any,
    mode: str,
    max_age: float | None,
    salt: str | None,
    key_urls: bool,
    log: Any,
    owner: str | None = None,
) -> CacheSlot | None:
    """The request's slot in the cache, or ``None``: no cache set, an endpoint outside the registry, or an input
    given as a URL that is not keyed (said in the log). Raises ``InputValidationError`` for bad cache settings."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.storage.cache_keys import request_key
    from airflow_provider_sam3.storage.result_cache import ResultCache, check_cache_settings

    if result_cache in (None, ""):
        return None
    check_cache_settings(root=result_cache, mode=mode, max_age=max_age, salt=salt, key_urls=key_urls)
    cache = ResultCache(result_cache, mode=mode, max_age=max_age, log=log)
    endpoint = ENDPOINTS.get(request.endpoint_id)
    if endpoint is None:
        log.info("The result cache keeps SAM 3 results only; %s is sent without it", request.endpoint_id)
        return None
    key = request_key(endpoint, request.body, digests=request.stable_fields, key_urls=key_urls, salt=salt)
    if key is None:
        log.info("Not using the result cache: an input is a URL whose bytes may change (set cache_urls=True to key it)")
        return None
    return CacheSlot(cache, key, request.endpoint_id, owner)


def document_from_cache(
    hit: CachedResult, *, endpoint_id: str, image: dict[str, Any] | None, output_path: Any, log: Any
) -> dict[str, Any] | None:
    """The task's document from a cache entry (``storage.cached_documents``), as XCom takes it; ``None`` when the
    entry cannot be used (then it is a miss)."""
    from airflow_provider_sam3.storage import cached_documents

    result = cached_documents.document_from_cache(
        hit, endpoint_id=endpoint_id, image=image, output_path=output_path, log=log
    )
    if result is None:
        return None
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
    from airflow_provider_sam3.storage.cached_documents import keep_result
    from airflow_provider_sam3.storage.outputs import output_urls

    log = log or logging.getLogger(__name__)

    try:
        kept = keep_result(
            slot.cache,
            slot.key,
            reference=reference,
            output=output,
            metrics=metrics,
            urls=output_urls(result),
            read=lambda url: _stored_copy(result, url) or hook.download(url),
            cost_usd=result.cost_usd,
        )
    except Exception as error:  # noqa: BLE001 - the result is the task's; the cache is a saving
        log.warning("Could not keep request %s in the result cache (%s)", reference.request_id, error)
        return
    finally:
        slot.release()
    if kept is not None:  # not in read-only mode
        result.cache = CacheNote(key=slot.key, hit=False)


def _stored_copy(result: ResultDocument, url: str) -> bytes | None:
    """The bytes of the task's own copy of ``url``, when it made one."""
    from airflow_provider_sam3.storage.outputs import file_entries

    for entry in file_entries(result):
        if entry.url == url and entry.stored_url:
            return result.read_stored(entry.stored_url, "cache", read=_read_remote)
    return None


def _read_remote(location: str) -> bytes:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_sam3.guards.files import read_regular_file
    from airflow_provider_sam3.storage.result_cache import MAX_FILE_BYTES

    return read_regular_file(ObjectStoragePath(location), "cache", MAX_FILE_BYTES, setting=None)
