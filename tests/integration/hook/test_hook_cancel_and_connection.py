"""Cancel outcomes, the connection test button, and where the hook finds its key and host."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hook_helpers import ARGS, IMAGE_ENDPOINT, dead_port, reference_at, set_connection, wait_until

from airflow_provider_sam3.exceptions import FalAuthenticationError
from airflow_provider_sam3.hooks.fal import FalHook

# ---------------------------------------------------------------- cancel


def test_cancel_of_a_queued_request_is_requested_and_counted(fal_emulator, fal_conn):
    fal_emulator.configure(concurrency=1, service_time_s=3.0)
    hook = FalHook()
    running = hook.submit(IMAGE_ENDPOINT, ARGS)
    queued = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert hook.status(queued).state == "IN_QUEUE"

    assert hook.cancel(queued) == "CANCELLATION_REQUESTED"
    counters = fal_emulator.counters()
    assert counters["cancels"] == {"total": 1, "by_endpoint": {IMAGE_ENDPOINT: 1}}
    assert counters["queue_length"] == 0
    status = hook.status(queued)
    assert status.done and status.error  # a cancelled request completes with an error, never runs
    assert hook.cancel(running) == "CANCELLATION_REQUESTED"
    assert fal_emulator.counters()["cancels"]["total"] == 2


def test_cancel_of_a_completed_request_is_an_outcome_not_an_error(fal_emulator, fal_conn):
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(ref)
    assert hook.cancel(ref) == "ALREADY_COMPLETED"
    assert hook.result(ref)["masks"]  # cancelling a finished request does not touch its result


def test_cancel_of_an_unknown_request_is_not_found(fal_emulator, fal_conn):
    assert FalHook().cancel(reference_at(fal_emulator.host, request_id=str(uuid.uuid4()))) == "NOT_FOUND"
    assert fal_emulator.counters()["cancels"]["total"] == 0


def test_async_cancel_outcomes(fal_emulator, fal_conn):
    fal_emulator.configure(concurrency=1, service_time_s=3.0)
    sync = FalHook()
    running = sync.submit(IMAGE_ENDPOINT, ARGS)
    queued = sync.submit(IMAGE_ENDPOINT, ARGS)
    unknown = reference_at(fal_emulator.host, request_id=str(uuid.uuid4()))

    async def go():
        hook = FalHook()
        try:
            return [
                await hook.acancel(queued),
                await hook.acancel(running),
                await hook.acancel(queued),
                await hook.acancel(unknown),
            ]
        finally:
            await hook.aclose()

    first, second, again, missing = asyncio.run(go())
    assert (first, second, missing) == ("CANCELLATION_REQUESTED", "CANCELLATION_REQUESTED", "NOT_FOUND")
    assert again == "ALREADY_COMPLETED"  # the queued one was completed (as cancelled) by the first call
    wait_until(lambda: fal_emulator.counters()["in_progress"] == 0, timeout=5)
    assert fal_emulator.counters()["cancels"]["total"] == 3


# ---------------------------------------------------------------- test_connection


def test_connection_ok_with_the_emulator_key(fal_emulator, fal_conn):
    ok, message = FalHook().test_connection()
    assert ok is True, message
    assert fal_emulator.host in message and "accepted" in message
    assert fal_emulator.api_key not in message


def test_connection_with_a_bad_key(fal_emulator, fal_conn):
    fal_conn(password="definitely-wrong")
    ok, message = FalHook().test_connection()
    assert ok is False
    assert "key" in message.lower() and "rejected" in message
    assert "definitely-wrong" not in message


def test_connection_with_an_exhausted_key(fal_emulator, fal_conn):
    fal_emulator.configure(exhausted_keys=["spent-key"])
    fal_conn(password="spent-key")
    ok, message = FalHook().test_connection()
    assert ok is False and "locked" in message


def test_connection_to_an_unreachable_host(fal_emulator, fal_conn):
    host = f"127.0.0.1:{dead_port()}"
    fal_conn(host=host)
    ok, message = FalHook().test_connection()
    assert ok is False
    assert "reach" in message and host in message and "host" in message.lower()


def test_connection_without_any_key(fal_emulator, fal_conn, monkeypatch):
    monkeypatch.delenv("FAL_KEY")
    fal_conn(password=None)
    ok, message = FalHook().test_connection()
    assert ok is False and "no fal API key" in message


# ---------------------------------------------------------------- where the key and host come from


def test_connection_password_wins_over_fal_key(fal_emulator, fal_conn, monkeypatch):
    monkeypatch.setenv("FAL_KEY", "stale-environment-key")
    hook = FalHook()
    assert hook.get_settings().key_source == "Airflow connection 'fal_default'"
    assert hook.wait(hook.submit(IMAGE_ENDPOINT, ARGS)).error is None


def test_without_a_connection_fal_key_and_queue_host_are_used(fal_emulator, monkeypatch):
    # The fixture set FAL_KEY and FAL_QUEUE_RUN_HOST for the emulator; there is no fal_default connection.
    hook = FalHook()
    settings = hook.get_settings()
    assert settings.key_source == "environment variable FAL_KEY" and settings.queue_host == fal_emulator.host
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert ref.status_url.startswith(fal_emulator.base_url)


def test_key_id_and_secret_are_joined(fal_emulator, monkeypatch):
    key_id, _, secret = "kid:ksecret".partition(":")
    fal_emulator.configure(api_key=f"{key_id}:{secret}")
    monkeypatch.delenv("FAL_KEY")
    monkeypatch.setenv("FAL_KEY_ID", key_id)
    monkeypatch.setenv("FAL_KEY_SECRET", secret)
    hook = FalHook()
    assert hook.get_settings().key_source == "FAL_KEY_ID/FAL_KEY_SECRET"
    assert hook.test_connection()[0] is True


def test_connection_host_wins_over_fal_queue_run_host(fal_emulator, monkeypatch):
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", f"127.0.0.1:{dead_port()}")
    set_connection(monkeypatch, password=fal_emulator.api_key, host=f"https://{fal_emulator.host}/")
    hook = FalHook()
    assert hook.get_settings().queue_host == fal_emulator.host
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert ref.status_url.startswith(fal_emulator.base_url + "/")


def test_missing_key_fails_before_any_call(fal_emulator, monkeypatch):
    monkeypatch.delenv("FAL_KEY")
    with pytest.raises(FalAuthenticationError) as raised:
        FalHook().submit(IMAGE_ENDPOINT, ARGS)
    assert "no fal API key" in str(raised.value)
    assert fal_emulator.counters()["submissions"]["total"] == 0


def test_two_connections_submit_to_their_own_hosts(fal_emulator, monkeypatch, tmp_path):
    """fal-client's submit URL is a process-wide global; a hook must not send one connection's key elsewhere."""
    from pathlib import Path

    from airflow_provider_sam3.testing import EmulatorConfig, FalEmulator

    config = EmulatorConfig(service_time_s=0.05, api_key="second-key", cert_dir=str(tmp_path / "second"))
    with FalEmulator(config) as second:
        both = tmp_path / "both.pem"
        both.write_text(
            Path(fal_emulator.env["SSL_CERT_FILE"]).read_text() + Path(second.env["SSL_CERT_FILE"]).read_text()
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(both))
        set_connection(monkeypatch, conn_id="fal_first", password=fal_emulator.api_key, host=fal_emulator.host)
        set_connection(monkeypatch, conn_id="fal_second", password=second.api_key, host=second.host)
        first, other = FalHook("fal_first"), FalHook("fal_second")
        first.get_conn(), other.get_conn()  # both clients exist before either submits

        async def async_submits():
            afirst, aother = FalHook("fal_first"), FalHook("fal_second")
            try:
                await afirst.aget_conn(), await aother.aget_conn()
                return await afirst.asubmit(IMAGE_ENDPOINT, ARGS), await aother.asubmit(IMAGE_ENDPOINT, ARGS)
            finally:
                await afirst.aclose(), await aother.aclose()

        references = [
            first.submit(IMAGE_ENDPOINT, ARGS),
            other.submit(IMAGE_ENDPOINT, ARGS),
            *asyncio.run(async_submits()),
        ]
        hosts = [ref.status_url.split("/")[2] for ref in references]
        assert hosts == [fal_emulator.host, second.host] * 2
        assert fal_emulator.counters()["submissions"]["total"] == 2
        assert second.counters()["submissions"]["total"] == 2


def test_a_certificate_the_process_cannot_verify_is_reported_as_such_with_the_fix(fal_emulator, fal_conn, monkeypatch):
    """An Airflow process without the emulator's SSL_CERT_FILE (or behind a TLS-inspecting proxy) meets a
    certificate it cannot verify: the Test button and a submit say so, with the fix, and nothing reaches fal."""
    import certifi

    from airflow_provider_sam3.exceptions import FalTlsError

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())  # a real CA bundle without the emulator's certificate
    ok, message = FalHook().test_connection()
    assert not ok
    assert f"Connecting to fal's queue at {fal_emulator.host} stopped: the host's TLS certificate" in message
    assert "SSL_CERT_FILE" in message and "Check the host" not in message
    with pytest.raises(FalTlsError) as raised:
        FalHook().submit(IMAGE_ENDPOINT, ARGS)
    assert "TLS certificate could not be verified" in str(raised.value) and "SSL_CERT_FILE" in str(raised.value)
    assert raised.value.retryable is False
    assert fal_emulator.counters()["submissions"]["total"] == 0
