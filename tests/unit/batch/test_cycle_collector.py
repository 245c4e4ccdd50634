"""What keeps a batch's memory flat: garbage reference cycles holding large bodies are collected after a bounded
number of bytes, cheaply (what was alive before is frozen), and the process's freeze is left as it was found."""

from __future__ import annotations

import gc
import weakref

import pytest

from airflow_provider_sam3.batch.memory import MIN_CALL_BYTES, CycleCollector, body_bytes_estimate


class Body:
    """A large body in a reference cycle, as httpx leaves each response (the response and its stream)."""

    def __init__(self) -> None:
        self.data = bytes(1024 * 1024)
        self.itself = self


def garbage_body() -> weakref.finalize:
    return weakref.finalize(Body(), lambda: None)  # alive until the cycle is collected


def test_a_pass_runs_once_enough_bytes_went_through(no_automatic_collection):
    with CycleCollector(collect_after_bytes=3_000) as cycles:
        body = garbage_body()
        cycles.passed(2_999)
        assert body.alive and cycles.passes == 0
        cycles.passed(1)
        assert not body.alive and cycles.passes == 1
        later = garbage_body()  # the count starts again after a pass
        cycles.passed(2_999)
        assert later.alive and cycles.passes == 1
        cycles.passed(1)
        assert not later.alive and cycles.passes == 2


def test_garbage_from_before_is_collected_on_entry_not_frozen(no_automatic_collection):
    body = garbage_body()
    with CycleCollector():
        assert not body.alive


def test_what_was_alive_is_frozen_inside_and_thawed_after():
    assert gc.get_freeze_count() == 0
    kept = Body()
    with CycleCollector():
        assert gc.get_freeze_count() > 0  # a pass scans only what the batch made since
    assert gc.get_freeze_count() == 0
    del kept


def test_a_freeze_made_by_someone_else_is_left_in_place():
    """A forking executor freezes its objects before forking so that children share their pages."""
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with CycleCollector():
            pass
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(820, 820, 820 * 820 * 3), (4000, 3000, 36_000_000), (None, None, MIN_CALL_BYTES), (10, 10, MIN_CALL_BYTES)],
)
def test_a_calls_bytes_are_estimated_from_its_pixels(width, height, expected):
    assert body_bytes_estimate(width, height) == expected
