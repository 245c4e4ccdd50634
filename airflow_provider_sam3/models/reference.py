"""The request reference: everything needed to find a submitted fal request again, as plain JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["RequestReference"]


class RequestReference(BaseModel):
    """Identifies one submitted request. Lives in trigger kwargs, XCom and the task state store.

    The URLs are fal's own (returned on submit), used verbatim: they carry the queue host that accepted the
    request, so a reference survives a change of default host.
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    endpoint_id: str
    request_id: str
    status_url: str
    response_url: str
    cancel_url: str
    submitted_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives only, safe for trigger kwargs and the task state store."""
        return self.model_dump(mode="json", exclude_none=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestReference:
        return cls.model_validate(data)
