"""Fixtures of the trust-boundary tests: hostile local servers and a fal connection (the photo and runner come from
``tests/integration/conftest.py``)."""

from __future__ import annotations

import json

import pytest
from hostile import HostileServer


@pytest.fixture
def hostile(fal_emulator):
    """``hostile(answer=..., tls=True)`` starts one more hostile server; all are stopped after the test."""
    servers: list[HostileServer] = []

    def start(answer=None, *, tls: bool = True) -> HostileServer:
        server = HostileServer(str(fal_emulator.cert_file), tls=tls)
        if answer is not None:
            server.answer = answer
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def connect(fal_emulator, monkeypatch):
    """``connect(host=..., **extra)`` defines ``fal_default`` (the emulator's key; its host unless told)."""

    def define(host: str | None = None, conn_id: str = "fal_default", **extra: object) -> None:
        extra.setdefault("poll_interval", 0.2)
        conn = {"conn_type": "fal", "password": fal_emulator.api_key, "host": host or fal_emulator.host, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))

    define()
    return define


@pytest.fixture
def photos(tmp_path):
    """``photos(n)``: n small generated photos in ``tmp_path/in``."""
    from photos import write_photos

    def make(count: int, *, seed: int = 7, name: str = "in"):
        return write_photos(tmp_path / name, count, seed=seed)

    return make
