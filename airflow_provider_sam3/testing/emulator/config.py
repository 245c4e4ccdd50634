"""The emulator's knobs (``EmulatorConfig``) and fault-injection rules (``FaultRule``).

Both are pydantic models so the Python API, the CLI and ``POST /_emulator/config`` validate knobs the same way.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_API_KEY",
    "EmulatorConfig",
    "FAULT_KINDS",
    "FAULT_TARGETS",
    "FaultKind",
    "FaultRule",
    "FaultTarget",
    "REQUEST_FAULTS",
]

FaultKind = Literal[
    "rate_limit_429",
    "nginx_502",
    "nginx_503",
    "nginx_504",
    "runner_503",
    "app_500",
    "drop_connection",
    "slow_response",
    "vanish",
    "expire_early",
    "cancel_elsewhere",
]
FaultTarget = Literal["submit", "status", "result", "cancel", "any"]

FAULT_KINDS: tuple[str, ...] = FaultKind.__args__  # type: ignore[attr-defined]
FAULT_TARGETS: tuple[str, ...] = FaultTarget.__args__  # type: ignore[attr-defined]
REQUEST_FAULTS = frozenset({"app_500", "expire_early", "cancel_elsewhere"})
"""Faults decided when a request is submitted (the submit itself succeeds); they may only target ``submit``/``any``."""

DEFAULT_API_KEY = "emulator-key"


class FaultRule(BaseModel):
    """Inject ``kind`` into calls of ``target`` (optionally only for ``endpoint_id``).

    Give exactly one trigger: ``rate`` (probability per matching call, from the seeded RNG), ``first`` (the first N
    matching calls) or ``every`` (every Nth matching call). ``delay_s`` is the delay of ``slow_response``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    target: FaultTarget = "any"
    endpoint_id: str | None = None
    rate: float | None = Field(default=None, ge=0.0, le=1.0)
    first: int | None = Field(default=None, ge=1)
    every: int | None = Field(default=None, ge=1)
    delay_s: float = Field(default=125.0, ge=0.0)

    @model_validator(mode="after")
    def _one_trigger(self) -> FaultRule:
        given = [name for name in ("rate", "first", "every") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of rate, first or every (got {', '.join(given) or 'none'})")
        if self.kind in REQUEST_FAULTS and self.target not in ("submit", "any"):
            raise ValueError(f"{self.kind} is decided at submit time; its target must be 'submit' or 'any'")
        if self.endpoint_id is not None:
            from airflow_provider_sam3.endpoints import ENDPOINTS

            if self.endpoint_id not in ENDPOINTS:
                raise ValueError(f"endpoint_id {self.endpoint_id!r} is not a registry endpoint")
        return self


class EmulatorConfig(BaseModel):
    """Every knob of the emulator. ``port`` and ``cert_dir`` apply at start; the rest can change at runtime."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    port: int = Field(default=0, ge=0, le=65535)
    cert_dir: str | None = None
    api_key: str = Field(default=DEFAULT_API_KEY, min_length=1)
    exhausted_keys: list[str] = Field(default_factory=list)
    service_time_s: float = Field(default=0.5, ge=0.0)
    service_jitter_s: float = Field(default=0.0, ge=0.0)
    concurrency: int = Field(default=2, ge=1)
    in_progress_logs: int = Field(default=3, ge=0)
    media_ttl_s: float = Field(default=3600.0, gt=0)
    result_retention_s: float = Field(default=3600.0, ge=0)
    large_result_retention_s: float = Field(default=360.0, ge=0)
    large_result_bytes: int = Field(default=10 * 1024, ge=1)
    media_budget_bytes: int = Field(default=128 * 2**20, ge=0)
    """Bytes of generated files kept; beyond it the oldest expire first (as fal's retention lets old media go)."""
    result_budget_bytes: int = Field(default=32 * 2**20, ge=0)
    """Bytes of result bodies kept; beyond it the oldest results expire first (their result call answers 404)."""
    sse_keepalive_s: float = Field(default=15.0, gt=0)
    seed: int = 0
    faults: list[FaultRule] = Field(default_factory=list)

    STARTUP_ONLY: ClassVar[frozenset[str]] = frozenset({"port", "cert_dir"})

    def runtime_knobs(self) -> dict:
        """The knobs ``configure`` may change, with their current values."""
        return {k: v for k, v in self.model_dump().items() if k not in self.STARTUP_ONLY}

    def updated(self, **knobs: object) -> EmulatorConfig:
        """A validated copy with ``knobs`` changed; startup-only knobs are refused."""
        refused = sorted(set(knobs) & self.STARTUP_ONLY)
        if refused:
            raise ValueError(f"{', '.join(refused)} can only be set when the emulator starts")
        return EmulatorConfig.model_validate({**self.model_dump(), **knobs})
