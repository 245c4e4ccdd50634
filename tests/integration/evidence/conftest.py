"""Fixtures of the evidence suites (``photo`` and ``run_dag`` come from ``tests/integration/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def fast_retries(monkeypatch):
    """The hook's own retry backoff (1 s, 2 s, 4 s...) shortened so the table runs in minutes, not the logic."""
    from airflow_provider_sam3.hooks import retries as hook_retries
    from airflow_provider_sam3.hooks.backoff import Backoff

    monkeypatch.setattr(hook_retries, "RETRY_BACKOFF", Backoff(first=0.05, cap=0.2))
