"""Where the hook finds the key and host: the connection first, then FAL_KEY, then FAL_KEY_ID/FAL_KEY_SECRET."""

from __future__ import annotations

import json

import pytest

from airflow_provider_sam3.exceptions import FalAuthenticationError, InputValidationError
from airflow_provider_sam3.hooks.fal import FalHook


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_QUEUE_RUN_HOST", "AIRFLOW_CONN_FAL_DEFAULT"):
        monkeypatch.delenv(name, raising=False)


def set_connection(monkeypatch, conn_id="fal_default", **fields):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "fal", **fields}))


def test_connection_password_wins_over_environment(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "env-key")
    set_connection(
        monkeypatch,
        password="conn-key",
        host="queue.example:8443",
        extra={"request_timeout": 30, "poll_interval": 0.01, "max_poll_interval": "9"},
    )
    settings = FalHook().get_settings()
    assert settings.key == "conn-key" and settings.key_source == "Airflow connection 'fal_default'"
    assert settings.queue_host == "queue.example:8443"
    assert settings.request_timeout == 30 and settings.max_poll_interval == 9
    assert settings.poll_interval == 0.2  # never faster than the floor, whatever the extra says


def test_connection_without_password_falls_back_to_fal_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "env-key")
    set_connection(monkeypatch, host="https://queue.example/")
    settings = FalHook().get_settings()
    assert (settings.key, settings.key_source) == ("env-key", "environment variable FAL_KEY")
    assert settings.queue_host == "queue.example"


def test_no_connection_uses_key_id_and_secret_and_env_host(monkeypatch):
    monkeypatch.setenv("FAL_KEY_ID", "id")
    monkeypatch.setenv("FAL_KEY_SECRET", "secret")
    monkeypatch.setenv("FAL_QUEUE_RUN_HOST", "127.0.0.1:9999")
    settings = FalHook("fal_missing").get_settings()
    assert settings.key == "id:secret"
    assert settings.queue_host == "127.0.0.1:9999"


def test_default_host_is_fal():
    assert FalHook("fal_missing").get_settings().queue_host == "queue.fal.run"


def test_no_key_anywhere_is_a_clear_error_before_any_request():
    with pytest.raises(FalAuthenticationError, match="no fal API key found.*fal_missing"):
        FalHook("fal_missing").get_conn()


def test_bad_extra_number_names_the_field(monkeypatch):
    set_connection(monkeypatch, password="k", extra={"request_timeout": "soon"})
    with pytest.raises(InputValidationError, match="request_timeout"):
        FalHook().get_settings()


def test_key_is_not_in_the_settings_repr(monkeypatch):
    set_connection(monkeypatch, password="sentinel-key-123")
    assert "sentinel-key-123" not in repr(FalHook().get_settings())


def test_connection_test_reports_missing_key_in_words():
    ok, message = FalHook("fal_missing").test_connection()
    assert ok is False and "no fal API key found" in message


@pytest.mark.parametrize("pasted", ["  key-id:secret\n", "\tkey-id:secret\r\n"])
def test_spaces_and_line_breaks_around_a_pasted_key_are_dropped(monkeypatch, pasted):
    set_connection(monkeypatch, password=pasted)
    assert FalHook().get_settings().key == "key-id:secret"
    monkeypatch.delenv("AIRFLOW_CONN_FAL_DEFAULT")
    monkeypatch.setenv("FAL_KEY", pasted)
    assert FalHook().get_settings().key == "key-id:secret"


@pytest.mark.parametrize("broken", ["key-id:sec ret", "key-id:\nsecret", "key-id:sécret", "key\x00id:secret"])
def test_a_key_no_header_can_carry_is_refused_without_quoting_it(monkeypatch, broken):
    set_connection(monkeypatch, password=broken)
    with pytest.raises(FalAuthenticationError) as refused:
        FalHook().get_settings()
    message = str(refused.value)
    assert "connection 'fal_default'" in message and "paste the key again" in message
    assert "key-id" not in message and "key\x00id" not in message  # no part of the key


def test_the_result_cache_extra_is_a_folder_or_refused_by_name(monkeypatch):
    set_connection(monkeypatch, password="k", extra={"result_cache": "s3://bucket/sam3-cache"})
    assert FalHook().get_settings().result_cache == "s3://bucket/sam3-cache"
    set_connection(monkeypatch, password="k")
    assert FalHook().get_settings().result_cache is None
    set_connection(monkeypatch, password="k", extra={"result_cache": ["not", "a", "path"]})
    with pytest.raises(InputValidationError, match="extra result_cache"):
        FalHook().get_settings()
