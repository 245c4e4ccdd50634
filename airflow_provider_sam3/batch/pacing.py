"""When a batch defers and when its trigger fires: pure decisions from how many requests wait, how many images are
still to submit, and the rate at which fal finishes them."""

from __future__ import annotations

from airflow_provider_sam3.batch.options import BatchOptions

__all__ = ["COLLECT_EVERY_MIN", "COLLECT_ROUNDS", "WORKER_WAIT_SECONDS", "fire_at_count", "worth_staying"]

WORKER_WAIT_SECONDS = 5.0
"""When the next thing worth doing (the batch's end, or room to submit more) is estimated closer than this, the
worker waits for it itself: a deferral round trip (about 4 s measured on Airflow 3.3.2 here) would cost more."""
COLLECT_EVERY_MIN = 100
COLLECT_ROUNDS = 5
"""By default the trigger hands back finished requests about this many times per batch (at least
``COLLECT_EVERY_MIN`` at a time), so outputs are copied while fal still works on the rest."""


def worth_staying(waiting: int, fire_at: int | None, rate: float | None) -> bool:
    """Whether the trigger would fire so soon (the batch's end, or room to submit more) that a deferral round
    trip would cost more than waiting on the worker."""
    if rate is None:
        return False
    return (fire_at or waiting) / rate <= WORKER_WAIT_SECONDS


def fire_at_count(waiting: int, pending: int, rate: float | None, options: BatchOptions) -> int | None:
    """How many finished requests make the trigger fire early: to submit more (``max_in_flight``), to come
    back for the last few seconds of the batch, or to store outputs while fal works on the rest."""
    candidates = []
    if pending:
        candidates.append(max(1, min(waiting, options.max_in_flight // 2)))
    if rate:
        candidates.append(waiting - int(rate * WORKER_WAIT_SECONDS))
    if options.collect_every != 0:
        candidates.append(options.collect_every or max(COLLECT_EVERY_MIN, waiting // COLLECT_ROUNDS))
    useful = [count for count in candidates if 0 < count < waiting]
    return min(useful, default=None)
