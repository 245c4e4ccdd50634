"""An offline stand-in for fal's queue serving the SAM 3 family, for tests and local DAG runs.

Importing this package is cheap: ``FalEmulator``, ``EmulatorConfig`` and ``FaultRule`` load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "FalEmulator": "airflow_provider_sam3.testing.emulator.runner",
    "EmulatorConfig": "airflow_provider_sam3.testing.emulator.config",
    "FaultRule": "airflow_provider_sam3.testing.emulator.config",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from airflow_provider_sam3.testing.emulator.config import EmulatorConfig, FaultRule
    from airflow_provider_sam3.testing.emulator.runner import FalEmulator


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
