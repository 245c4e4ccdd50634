"""Errors keep their root cause: no exception is its own ``__cause__`` (which hid the httpx error under a lost
connection and sent chain walkers round forever), and a refused URL is a final error that says why."""

from __future__ import annotations

import socket

import pytest

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.fetched_results import (
    as_task_error,
    fetch_result_document,
    raise_task_error,
    root_cause,
)

RID = "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"


def dead_host() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def chain(error: BaseException) -> list[BaseException]:
    """Every exception under ``error`` by ``__cause__``/``__context__``, failing on a cycle instead of looping."""
    seen: list[BaseException] = []
    while error is not None:
        assert all(error is not earlier for earlier in seen), f"cycle at {type(error).__name__}: {error}"
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


@pytest.fixture
def quick(monkeypatch):
    import fal_client.client

    from airflow_provider_sam3.hooks.backoff import Backoff

    monkeypatch.setattr(fal_client.client, "MAX_ATTEMPTS", 1)
    monkeypatch.setattr("airflow_provider_sam3.hooks.retries.RETRY_BACKOFF", Backoff(first=0.01, cap=0.02))


def reference_on(host: str) -> RequestReference:
    base = f"https://{host}/fal-ai/sam-3/requests/{RID}"
    return RequestReference(
        endpoint_id="fal-ai/sam-3/image",
        request_id=RID,
        status_url=f"{base}/status",
        response_url=base,
        cancel_url=f"{base}/cancel",
    )


def test_a_lost_connection_keeps_the_httpx_root_cause(connect, quick):
    import httpx

    host = dead_host()
    connect(host=host)
    with pytest.raises(exc.FalTransientError) as raised:
        fetch_result_document(FalHook(retry_attempts=1), reference_on(host))
    errors = chain(raised.value)
    assert raised.value.__cause__ is not raised.value
    assert isinstance(errors[-1], httpx.ConnectError) or any(isinstance(e, httpx.ConnectError) for e in errors)
    assert root_cause(raised.value) is errors[-1]


def test_the_sensor_poke_keeps_the_root_cause(fal_emulator, connect, quick):
    import httpx

    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    host = dead_host()
    connect(host=host)
    sensor = FalRequestSensor(task_id="wait", reference=reference_on(host).to_dict(), poke_interval=0.2, timeout=5)
    with pytest.raises(exc.FalTransientError) as raised:
        sensor.poke({})
    assert any(isinstance(e, httpx.ConnectError) for e in chain(raised.value))


def test_raise_task_error_never_makes_an_error_its_own_cause():
    root = OSError("disk on fire")
    error = exc.FalTransientError("copy failed", request_id=RID)
    error.__cause__ = root
    with pytest.raises(exc.FalTransientError) as raised:
        raise_task_error(error)
    assert raised.value is error and error.__cause__ is root
    from airflow.sdk.exceptions import AirflowFailException

    final = exc.FalUntrustedUrlError("refused", request_id=RID)
    with pytest.raises(AirflowFailException) as failed:
        raise_task_error(final)
    assert failed.value.__cause__ is final and as_task_error(final) is not final


def test_root_cause_survives_a_cycle():
    error = ValueError("loop")
    error.__cause__ = error
    assert root_cause(error) is error
    first, second = KeyError("a"), KeyError("b")
    first.__cause__, second.__cause__ = second, first
    assert root_cause(first) is second


def test_for_request_names_the_request_and_keeps_the_original():
    bare = exc.FalOutputRefusedError("output file x was not fetched: it uses file://")
    named = bare.for_request("fal-ai/sam-3/image", RID)
    assert isinstance(named, exc.FalOutputRefusedError) and named.retryable is False
    assert str(named).startswith(f"fal-ai/sam-3/image request {RID}: output file x")
    assert named.__cause__ is bare and chain(named)[-1] is bare
