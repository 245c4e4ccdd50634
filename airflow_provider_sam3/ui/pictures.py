"""Overlays for the tab, rendered on demand: the task's input with each mask outlined, labelled and scored.

Masks are read through the document's own readers, so only files inside its ``output_location`` are read. The
photo underneath is the input the task recorded, decoded within the image guards and re-encoded (never served as
stored); when the API server cannot read it (a worker's local disk) the stored preview, else a grey canvas of the
input's size, stands in. Rendered PNGs are kept in a small LRU cache bounded in bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES, local_path, open_regular_file, read_regular_file

__all__ = [
    "CACHE_BYTES",
    "RENDERS_AT_ONCE",
    "THUMBNAIL_SIDE",
    "RenderedCache",
    "document_overlay",
    "open_location",
    "read_location",
]

THUMBNAIL_SIDE = 320
"""The longest side of a gallery thumbnail, in pixels."""
CACHE_BYTES = 64 * 1024 * 1024
"""How many bytes of rendered PNGs the API server keeps between requests."""
RENDERS_AT_ONCE = 2
"""Overlays drawn at the same time by one API server process (drawing is CPU work in its thread pool)."""
_RENDERING = threading.BoundedSemaphore(RENDERS_AT_ONCE)


MAX_SERVED_BYTES = 8 * 1024**3
"""The largest stored file the tab streams (videos and 3D models included)."""


def open_location(location: str) -> Any:
    """A guarded binary handle on a stored file (regular files only), to stream it in chunks."""
    local = local_path(location)
    if local is not None:
        return open_regular_file(local, "file", MAX_SERVED_BYTES, setting=None)
    from airflow.sdk import ObjectStoragePath

    return open_regular_file(ObjectStoragePath(location), "file", MAX_SERVED_BYTES, setting=None)


def read_location(location: str) -> bytes:
    """The bytes of a stored file: a local regular file, or object storage through the API server's connections."""
    local = local_path(location)
    if local is not None:
        return read_regular_file(local, "file", DEFAULT_MAX_INPUT_BYTES, setting=None)
    from airflow.sdk import ObjectStoragePath

    return read_regular_file(ObjectStoragePath(location), "file", DEFAULT_MAX_INPUT_BYTES, setting=None)


def document_overlay(document: Any, named: tuple[str, ...], *, max_side: int | None = None) -> bytes:
    """PNG of the document's input with its masks outlined and tagged ``#index score``; ``named`` are the
    locations the task's rendered arguments name (see the module docstring)."""
    with _RENDERING:
        return _draw(document, named, max_side)


def _draw(document: Any, named: tuple[str, ...], max_side: int | None) -> bytes:
    from airflow_provider_sam3.media.render import encode_png, overlay

    masks = document.mask_arrays(read=read_location)
    base = _base_picture(document, masks, named)
    tags = [f"#{m.index}" for m in document.masks]
    picture = overlay(base, masks, labels=tags, scores=[m.score for m in document.masks]) if masks else base
    if max_side and max(picture.size) > max_side:
        picture = picture.copy()
        picture.thumbnail((max_side, max_side))
    return encode_png(picture.convert("RGB"))


def _base_picture(document: Any, masks: list[Any], named: tuple[str, ...]) -> Any:
    from PIL import Image

    from airflow_provider_sam3.exceptions import Sam3ProviderError
    from airflow_provider_sam3.guards.images import decode_image

    size = (masks[0].shape[1], masks[0].shape[0]) if masks else None
    image = document.image
    if size is None and image is not None and image.width and image.height:
        size = (image.width, image.height)
    candidates = []
    if image is not None and image.source and _named_by(image.source, named):
        candidates.append(lambda: read_location(image.source))
    if getattr(document, "preview", None) is not None and document.preview.location:
        candidates.append(lambda: document.read_stored(document.preview.location, "preview", read_location))
    for read in candidates:
        try:
            picture = decode_image(read(), "image")  # overlay() turns it upright as fal saw it
        except (Sam3ProviderError, OSError, ValueError):
            continue
        if size is None or picture.size in (size, size[::-1]):
            return picture
    return Image.new("RGB", size or (THUMBNAIL_SIDE, THUMBNAIL_SIDE), (96, 96, 96))


def _named_by(source: str, named: tuple[str, ...]) -> bool:
    """Whether ``source`` is one of ``named`` or lies inside one of them (links resolved); never an http(s) URL."""
    from airflow_provider_sam3.exceptions import Sam3ProviderError
    from airflow_provider_sam3.guards.files import confined

    if source.lower().startswith(("http://", "https://", "data:")):
        return False
    for place in named:
        try:
            confined(source, place, "image")
        except (Sam3ProviderError, OSError, ValueError):
            continue
        return True
    return False


class RenderedCache:
    """Rendered PNGs by key, least recently used first out once their bytes pass ``limit``; thread-safe (the
    routes render in the API server's thread pool)."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self._items: OrderedDict[Any, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: Any, data: bytes) -> None:
        if len(data) > self.limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes += len(data) - (len(old) if old else 0)
            self._items[key] = data
            while self._bytes > self.limit:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
