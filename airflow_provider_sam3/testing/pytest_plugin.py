"""pytest fixtures that point the unmodified fal_client at a local fal emulator.

Enable with ``pytest_plugins = ["airflow_provider_sam3.testing.pytest_plugin"]`` in the root conftest.

- ``fal_emulator_server`` (session): one emulator for the whole run, started with ``FIXTURE_CONFIG``.
- ``fal_emulator`` (function): the same emulator, reset (requests, files, counters, faults, knobs back to
  ``FIXTURE_CONFIG``), with ``FAL_QUEUE_RUN_HOST``, ``SSL_CERT_FILE`` and ``FAL_KEY`` set and
  ``fal_client.client.QUEUE_URL_FORMAT`` patched for the test, all undone afterwards.

fal_client's module-level client caches its httpx client (and so the trusted certificate and key) on first use:
this is why one emulator, one certificate and one key serve the whole session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_sam3.testing import EmulatorConfig, FalEmulator

__all__ = ["FIXTURE_CONFIG", "FIXTURE_SERVICE_TIME_S", "fal_emulator", "fal_emulator_server"]

FIXTURE_SERVICE_TIME_S = 0.05
FIXTURE_CONFIG = EmulatorConfig(service_time_s=FIXTURE_SERVICE_TIME_S)
"""Defaults, except a short service time so tests do not wait."""


@pytest.fixture(scope="session")
def fal_emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalEmulator]:
    """A fal emulator running for the whole test session."""
    cert_dir = tmp_path_factory.mktemp("fal-emulator-cert")
    config = FIXTURE_CONFIG.model_copy(update={"cert_dir": str(cert_dir)})
    with FalEmulator(config) as emulator:
        yield emulator


@pytest.fixture
def fal_emulator(fal_emulator_server: FalEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[FalEmulator]:
    """The session's emulator, reset to ``FIXTURE_CONFIG``, with fal_client pointed at it for this test."""
    emulator = fal_emulator_server
    emulator.reset(restore_config=True)
    for name, value in emulator.env.items():
        monkeypatch.setenv(name, value)
    try:
        import fal_client.client
    except ImportError:
        pass
    else:
        monkeypatch.setattr(fal_client.client, "QUEUE_URL_FORMAT", f"https://{emulator.host}/")
    yield emulator
    emulator.reset(restore_config=True)
