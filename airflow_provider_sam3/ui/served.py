"""What each route of the tab answers, kept apart from FastAPI: a page's HTML and status, an overlay, a stored file
(only inside the task's recorded output location), the manifest in chunks. A missing task, a value that is not
what the route needs, or a location outside the task's folder answers 404 without saying more."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from airflow_provider_sam3.ui import pages
from airflow_provider_sam3.ui.pictures import THUMBNAIL_SIDE, RenderedCache, document_overlay, open_location
from airflow_provider_sam3.ui.records import TaskKey, read_task
from airflow_provider_sam3.ui.task_views import (
    BatchView,
    OtherView,
    RunningBatchView,
    SingleView,
    WaitingView,
    view_of,
)

__all__ = ["batch_thumbnail", "manifest_chunks", "single_overlay", "stored_file", "task_page"]

log = logging.getLogger(__name__)
RENDERED = RenderedCache()
"""Overlays and thumbnails already rendered by this API server process."""
_CHUNK = 256 * 1024


def _fail() -> Any:
    from fastapi import HTTPException

    return HTTPException(status_code=404, detail="Not found")


def task_page(session: Any, key: TaskKey, mount: str, status: str | None, number: int) -> tuple[int, str]:
    """``(status code, HTML)`` of the tab for this task instance."""
    record = read_task(session, key)
    if not record.exists:
        return 404, pages.not_found_page(key)
    view = view_of(record)
    urls = pages.Urls(mount, key)
    if isinstance(view, SingleView):
        return 200, pages.single_page(view.document, urls, files_served=bool(view.document.output_location))
    if isinstance(view, BatchView):
        number = max(1, min(number, 1_000_000))
        status = status if status and status.isidentifier() and len(status) <= 32 else None
        try:
            page = view.results.page((number - 1) * pages.PAGE_SIZE, pages.PAGE_SIZE, status)
        except (ValueError, OSError) as error:
            return 200, pages.other_page(record, [f"its manifest could not be read: {error}"])
        return 200, pages.batch_page(view.summary, page, status, number, urls)
    if isinstance(view, RunningBatchView):
        return 200, pages.running_batch_page(view)
    if isinstance(view, WaitingView):
        return 200, pages.waiting_page(view)
    assert isinstance(view, OtherView)
    return 200, pages.other_page(record, view.reasons)


def single_overlay(session: Any, key: TaskKey) -> bytes:
    view = view_of(read_task(session, key))
    if not isinstance(view, SingleView):
        raise _fail()
    cache_key = ("single", key, view.record.try_number, view.document.request_id)
    named = view.record.named_inputs()
    return _rendered(cache_key, lambda: document_overlay(view.document, named))


def batch_thumbnail(session: Any, key: TaskKey, position: int, index: int) -> bytes:
    view = view_of(read_task(session, key))
    if not isinstance(view, BatchView):
        raise _fail()
    cache_key = ("thumb", key, view.record.try_number, str(view.results.manifest), position, index)
    named = view.record.named_inputs()

    def render() -> bytes:
        row = view.results.row_at(position, index)
        return document_overlay(row.document(), named, max_side=THUMBNAIL_SIDE)

    return _rendered(cache_key, render)


def stored_file(session: Any, key: TaskKey, location: str) -> tuple[str, Iterator[bytes]]:
    """``(file name, chunks)`` of a file inside the task's recorded output location (links resolved), opened
    before the answer starts (so a refused one is a 404) and streamed from there."""
    from airflow_provider_sam3.guards.files import confined

    view = view_of(read_task(session, key))
    if isinstance(view, SingleView) and view.document.output_location:
        root: Any = view.document.output_location
    elif isinstance(view, BatchView):
        root = view.results.outputs_root()
    else:
        raise _fail()
    stack = ExitStack()
    try:
        checked = confined(location, str(root), "location")  # a local file: its real path, links resolved
        handle = stack.enter_context(open_location(str(checked)))
    except Exception:  # noqa: BLE001 - outside the folder, missing, not a regular file: all the same 404
        stack.close()
        raise _fail() from None
    return location.rstrip("/").rsplit("/", 1)[-1], _streamed(stack, handle)


def _streamed(stack: ExitStack, handle: Any) -> Iterator[bytes]:
    with stack:
        while chunk := handle.read(_CHUNK):
            yield chunk


def manifest_chunks(session: Any, key: TaskKey) -> Iterator[bytes]:
    view = view_of(read_task(session, key))
    if not isinstance(view, BatchView):
        raise _fail()
    return view.results.raw_chunks()


def _rendered(cache_key: Any, render: Any) -> bytes:
    cached = RENDERED.get(cache_key)
    if cached is not None:
        return cached
    try:
        data = render()
    except Exception as error:  # noqa: BLE001 - a damaged or missing result draws nothing, the page still works
        log.warning("SAM 3 tab: nothing drawn for %s: %s", cache_key[:2], error)
        raise _fail() from None
    RENDERED.put(cache_key, data)
    return data
