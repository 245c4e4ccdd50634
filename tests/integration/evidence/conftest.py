"""Evidence suites reuse the operator tests' fixtures: ``photo`` (a PNG the emulator segments) and ``run_dag``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "sam3_operator_test_fixtures", Path(__file__).resolve().parents[1] / "operators" / "conftest.py"
)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

photo = _fixtures.photo
run_dag = _fixtures.run_dag
square_photo = _fixtures.square_photo


@pytest.fixture
def fast_retries(monkeypatch):
    """The hook's own retry backoff (1 s, 2 s, 4 s...) shortened so the table runs in minutes, not the logic."""
    from airflow_provider_sam3.hooks import fal as fal_hook_module
    from airflow_provider_sam3.hooks.backoff import Backoff

    monkeypatch.setattr(fal_hook_module, "RETRY_BACKOFF", Backoff(first=0.05, cap=0.2))
