"""A request's queue status as plain JSON: what the hook returns and triggers put in events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["QueueState", "QueueStatus"]

QueueState = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


class QueueStatus(BaseModel):
    """One answer of fal's status endpoint. fal never says FAILED: a failed request is COMPLETED with ``error``."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    state: QueueState
    queue_position: int | None = None
    logs: list[dict[str, Any]] | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def done(self) -> bool:
        return self.state == "COMPLETED"

    def describe(self) -> str:
        """A short phrase for logs: "queued at position 3", "running", "completed"."""
        if self.state == "IN_QUEUE":
            return f"queued at position {self.queue_position}"
        if self.state == "IN_PROGRESS":
            return "running"
        return f"completed with error: {self.error}" if self.error else "completed"
