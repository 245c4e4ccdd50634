"""Keep a batch's memory flat however many images it holds: its large transient buffers (image bytes, data URIs,
request and response bodies of several MB) are freed as soon as they are done with, and returned to the OS.

Two causes were measured, and each has its remedy here:

- **Reference cycles** (``CycleCollector``): httpx makes every response a reference cycle (the response and its
  stream refer to each other), and a response refers to its request. A submit's body (the image as a data URI)
  and a result with its outputs inline (``sync_mode``) therefore stay allocated until Python's cycle collector
  runs, and in a task process holding Airflow's objects its full passes are rare. Dozens of such bodies piled up
  (44 alive at once in one probe), more as the batch grew: 2,000 photos of 2 MB peaked 1.59x higher than 200.
- **glibc's heap** (``keep_large_buffers_off_the_heap``, ``release_free_memory``): glibc serves allocations
  above its mmap threshold (128 KiB) with their own mappings, returned to the OS when freed, but raises that
  threshold to the size of each such block freed, up to 32 MiB. After the first image body is freed, every later
  one comes from the heap, whose fragments are not returned (measured: 448 -> 510 MB from 200 to 600 photos of
  2 MB; 453 -> 461 MB with the threshold fixed). Fixing the threshold with ``mallopt`` (which also turns the
  adjustment off) keeps them off the heap. It applies to the task's own process (Airflow runs each task in a
  process of its own); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from types import TracebackType
from typing import Any

__all__ = [
    "COLLECT_AFTER_BYTES",
    "CycleCollector",
    "MIN_CALL_BYTES",
    "MMAP_THRESHOLD_BYTES",
    "M_MMAP_THRESHOLD",
    "body_bytes_estimate",
    "keep_large_buffers_off_the_heap",
    "release_free_memory",
]

M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
_done = False
_libc: Any = None


def _glibc() -> Any:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _libc = False
    return _libc or None


def keep_large_buffers_off_the_heap() -> bool:
    """Fix glibc's mmap threshold at 128 KiB for this process (once); True when it took effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        _done = bool(_glibc().mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except AttributeError:  # not glibc (musl, macOS): nothing to adjust
        _done = False
    return _done


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (``malloc_trim``): results of a few hundred KB each, parsed and
    freed between long-lived small objects, otherwise leave holes that keep RSS growing with the images stored."""
    try:
        _glibc().malloc_trim(0)
    except AttributeError:
        pass


COLLECT_AFTER_BYTES = 32 * 1024 * 1024
"""A cycle-collector pass runs each time about this many bytes of request and response bodies went through."""
MIN_CALL_BYTES = 64 * 1024
"""What one call counts at least (its JSON, headers and buffers), so batches of tiny images collect now and then."""


def body_bytes_estimate(width: int | None, height: int | None) -> int:
    """What one call of an image of this size carries, from its pixels (3 bytes each): its data URI on submit, its
    mask and preview inline in the result. An estimate only paces the collector, so it errs on the large side."""
    return max(MIN_CALL_BYTES, (width or 0) * (height or 0) * 3)


class CycleCollector:
    """Collects the reference cycles that hold large bodies, after every ``COLLECT_AFTER_BYTES`` that went through.

    Inside ``with CycleCollector() as cycles:`` the objects alive at the start are frozen (``gc.freeze``), so a pass
    scans only what was made since (about 5 ms for a batch of 2 MB photos, against 300 ms for a full pass over a
    task process); they are unfrozen on the way out unless something else (a forking executor) froze objects
    first. ``cycles.passed(n)`` counts ``n`` bytes through and runs a pass when due.
    """

    def __init__(self, collect_after_bytes: int = COLLECT_AFTER_BYTES) -> None:
        self.collect_after_bytes = collect_after_bytes
        self.pending = 0
        self.passes = 0
        self._froze = False

    def __enter__(self) -> CycleCollector:
        gc.collect()  # what is garbage now is not frozen with the rest
        self._froze = gc.get_freeze_count() == 0
        gc.freeze()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._froze:
            gc.unfreeze()
            self._froze = False

    def passed(self, byte_count: int) -> None:
        """``byte_count`` bytes of bodies were sent or received (and are no longer needed)."""
        self.pending += byte_count
        if self.pending >= self.collect_after_bytes:
            self.pending = 0
            self.passes += 1
            gc.collect()
