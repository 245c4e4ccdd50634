"""Fixtures of the FalHook integration tests. The emulator fixture itself comes from the root conftest's plugin."""

from __future__ import annotations

import pytest
from hook_helpers import set_connection

from airflow_provider_sam3.hooks.backoff import Backoff


@pytest.fixture
def fal_conn(fal_emulator, monkeypatch):
    """``fal_default`` pointing at the emulator with its key; call it again to change the password or extras.

    ``poll_interval`` defaults to the smallest allowed (0.2 s) so ``wait()`` does not idle for fal's 2 s.
    """

    def define(password: str | None = "emulator", host: str | None = "emulator", **extra: object) -> None:
        extra.setdefault("poll_interval", 0.2)
        set_connection(
            monkeypatch,
            password=fal_emulator.api_key if password == "emulator" else password,
            host=fal_emulator.host if host == "emulator" else host,
            **extra,
        )

    define()
    return define


@pytest.fixture
def fast_retries(monkeypatch):
    """The hook's own retry delays shrunk to milliseconds (our code, not fal_client)."""
    monkeypatch.setattr("airflow_provider_sam3.hooks.retries.RETRY_BACKOFF", Backoff(first=0.01, cap=0.05))


@pytest.fixture
def few_fal_attempts(monkeypatch):
    """fal_client's own retry loop cut to 2 attempts (a module constant), so give-up paths stay short."""
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "MAX_ATTEMPTS", 2)
