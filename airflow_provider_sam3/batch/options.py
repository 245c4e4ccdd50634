"""What the batch operator tells the engine (``BatchOptions``) and what a stay hands back to defer on (``Waiting``),
with the bounds both sides share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_sam3.batch.cache import CacheSettings
from airflow_provider_sam3.batch.inputs import InputLimits

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "MAX_TRIGGER_REQUESTS", "BatchOptions", "Waiting"]

DEFAULT_MAX_IN_FLIGHT = 256
"""Requests waiting at fal at once by default: far more than an account's concurrency (so fal never runs dry),
few enough that the trigger's kwargs stay about 10 KB and a clear cancels all of them within Airflow's 30 s."""
MAX_TRIGGER_REQUESTS = 600
"""Most requests one ``FalBatchTrigger`` waits for (its kwargs then hold about 24 KB of ids; MySQL's
``trigger.kwargs`` is a 64 KB TEXT column, and Airflow encrypts kwargs, adding about a third)."""


@dataclass(frozen=True)
class BatchOptions:
    """The operator's options the engine acts on."""

    deferrable: bool = False
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    submit_concurrency: int = 8
    max_resubmits: int = 2
    collect_every: int | None = None
    poll_interval: float | None = None
    max_poll_interval: float | None = None
    submit_options: Any = None
    """fal's queue options for every submit (``models.submit_options.SubmitOptions``)."""
    try_number: int = 1
    shared_arguments: dict[str, Any] = field(default_factory=dict)
    limits: InputLimits = field(default_factory=InputLimits)
    cache: CacheSettings | None = None
    """The result cache the batch uses, or None."""


@dataclass(frozen=True)
class Waiting:
    """The stay ends with requests at fal: the operator defers on these ids (submission order). No ids: nothing is
    at fal, and the images left wait for keys other tasks are paying for (``batch.cache``): it defers on a timer."""

    request_ids: list[str]
    fire_at: int | None
