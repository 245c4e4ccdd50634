"""What an app answers for one request: the result's status code, JSON body and headers, and the ``error`` /
``error_type`` the COMPLETED status shows when it failed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

__all__ = [
    "AppError",
    "AppResult",
    "CANCELLED",
    "CRASHED",
    "INVALID_JSON",
    "NO_MASKS",
    "START_TIMEOUT",
    "unprocessable",
    "validation_failed",
]


@dataclass(frozen=True)
class AppResult:
    status_code: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def error(self) -> str | None:
        """A one-line description of a failure for the COMPLETED status (``None`` on success)."""
        if self.ok:
            return None
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, list):
            detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
        return str(detail) if detail else f"HTTP {self.status_code}"

    def encoded(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":")).encode()


class AppError(Exception):
    """Raised inside an app to answer with ``result`` instead of an output."""

    def __init__(self, result: AppResult) -> None:
        super().__init__(result.error)
        self.result = result


def unprocessable(field_name: str, msg: str, error_type: str) -> AppError:
    """A FastAPI-style 422 naming one body field."""
    detail = [{"loc": ["body", field_name], "msg": msg, "type": error_type}]
    return AppError(AppResult(422, {"detail": detail}, error_type="validation_error"))


def validation_failed(error: ValidationError) -> AppResult:
    """422 with pydantic's errors, located under ``body`` the way FastAPI reports them."""
    detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in error.errors(include_url=False)]
    return AppResult(422, {"detail": detail}, error_type="validation_error")


INVALID_JSON = AppResult(
    422,
    {"detail": [{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]},
    error_type="validation_error",
)
NO_MASKS = AppResult(422, {"detail": "No masks generated for the given prompts"}, error_type="validation_error")
CRASHED = AppResult(500, {"detail": "Internal Server Error"}, error_type="internal_error")
CANCELLED = AppResult(499, {"detail": "Request cancelled"}, error_type="request_cancelled")
START_TIMEOUT = AppResult(
    504,
    {"detail": "Request timed out before it started", "error_type": "request_timeout"},
    headers={"X-Fal-Request-Timeout-Type": "user", "X-Fal-Error-Type": "request_timeout"},
    error_type="request_timeout",
)
