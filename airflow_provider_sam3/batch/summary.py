"""The summary a batch task returns to XCom: counts, cost and where the manifest is (small, whatever the batch)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.state import BatchState
    from airflow_provider_sam3.endpoints import Endpoint

__all__ = ["BATCH_SUMMARY_KIND", "SUMMARY_FAILURES_SHOWN", "build_summary"]

BATCH_SUMMARY_KIND = "sam3.batch"
SUMMARY_FAILURES_SHOWN = 20


def build_summary(endpoint: Endpoint, state: BatchState, folder: Any, manifest: Any) -> dict[str, Any]:
    """Counts by outcome, submissions, what fal bills, and the first failures (the manifest lists them all).

    ``unseen`` counts submits whose outcome no try saw (a try died while the call was in flight): fal may have
    created a request for each that nobody could fetch; those images were sent again (``resubmissions``).
    ``cache_hits`` counts images answered from the result cache (nothing sent), ``cache_saved_usd`` what they would
    have cost."""
    entries = state.ordered()
    counts = state.counts()
    price = endpoint.estimate_cost(requests=1)
    billed = sum(e.billed for e in entries)
    hits = sum(1 for e in entries if e.cache_hit)
    missing = [e for e in entries if state.outcome_of(e).state != "done"]
    return {
        "schema_version": 1,
        "kind": BATCH_SUMMARY_KIND,
        "endpoint_id": endpoint.endpoint_id,
        "images": len(entries),
        "repeats": sum(1 for e in entries if e.state == "repeat"),
        "succeeded": counts["done"],
        "failed": counts["failed"],
        "invalid": counts["invalid"],
        "submissions": sum(e.submissions for e in entries),
        "resubmissions": sum(e.retries for e in entries),
        "unseen": sum(e.unseen for e in entries),
        "billed_requests": billed,
        "cost_usd": round(price * billed, 6) if price is not None else None,
        "cost_estimate_usd": state.estimate_usd,
        "cache_hits": hits,
        "cache_saved_usd": round(price * hits, 6) if price is not None else None,
        "wall_seconds": round(time.time() - state.started_at, 3),
        "output_path": str(folder),
        "manifest": str(manifest),
        "failures": [
            {
                "index": e.index,
                "source": e.source,
                "status": state.outcome_of(e).state,
                "error": state.outcome_of(e).error,
            }
            for e in missing[:SUMMARY_FAILURES_SHOWN]
        ],
        "unfinished": len(missing),
    }
