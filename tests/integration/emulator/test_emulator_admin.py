"""The ``/_emulator`` admin routes, the Python control API and the request log."""

from __future__ import annotations

import logging

import fal_client
import pytest
from emulator_helpers import IMAGE_ENDPOINT, png_data_uri, raw_client, squares_image, state_of, wait_until

from airflow_provider_sam3.testing import EmulatorConfig, FalEmulator, FaultRule

ARGS = {"image_url": png_data_uri(squares_image()), "prompt": "square"}


def test_admin_routes_need_no_key_and_drive_the_emulator(fal_emulator):
    with raw_client(fal_emulator, key=None) as admin:
        config = admin.get("/_emulator/config").json()
        assert config["api_key"] == "***" and config["service_time_s"] == 0.05
        changed = admin.post("/_emulator/config", json={"concurrency": 7, "service_time_s": 0.5})
        assert changed.status_code == 200 and changed.json()["concurrency"] == 7
        assert admin.post("/_emulator/config", json={"concurrency": 0}).status_code == 422
        assert admin.post("/_emulator/config", json={"port": 1}).status_code == 422
        assert admin.post("/_emulator/config", json={"no_such_knob": 1}).status_code == 422
        added = admin.post("/_emulator/faults", json={"kind": "nginx_502", "target": "status", "first": 1})
        assert added.status_code == 200 and added.json()["faults"][0]["kind"] == "nginx_502"
        assert admin.post("/_emulator/faults", json={"kind": "nginx_502"}).status_code == 422

        handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
        [record] = admin.get("/_emulator/requests").json()
        assert record["request_id"] == handle.request_id and record["endpoint_id"] == IMAGE_ENDPOINT
        assert record["state"] == "IN_PROGRESS" and record["cancelled"] is False and record["submitted_at"] > 0
        handle.get()
        counters = admin.get("/_emulator/counters").json()
        assert counters == {
            "submissions": {"total": 1, "by_endpoint": {IMAGE_ENDPOINT: 1}},
            "status_calls": counters["status_calls"],
            "stream_calls": 0,
            "result_calls": 1,
            "cancels": {"total": 0, "by_endpoint": {}},
            "faults": {"total": 1, "by_kind": {"nginx_502": 1}},
            "completed": 1,
            "billed": 1,
            "max_in_progress": 1,
            "in_progress": 0,
            "queue_length": 0,
            "webhooks": {"sent": 0, "failed": 0},
            "uploads": {"total": 0, "bytes": 0},
            "held": counters["held"],
        }
        assert counters["status_calls"] >= 2
        held = counters["held"]  # the mask and preview files, and the result body, are held within their budgets
        assert held["media_bytes"] > 0 and held["result_bytes"] > 0 and held["media_expired_early"] == 0
        assert admin.post("/_emulator/reset").json() == {"status": "OK"}
        assert admin.get("/_emulator/requests").json() == []
        assert admin.get("/_emulator/counters").json()["submissions"]["total"] == 0
        assert admin.get("/_emulator/config").json()["faults"] == []


def test_raising_concurrency_at_runtime_starts_queued_requests(fal_emulator):
    fal_emulator.configure(concurrency=1, service_time_s=2.0)
    with raw_client(fal_emulator) as client:
        ids = [client.post(f"/{IMAGE_ENDPOINT}", json=ARGS).json()["request_id"] for _ in range(3)]
        assert [state_of(client, i) for i in ids] == ["IN_PROGRESS", "IN_QUEUE", "IN_QUEUE"]
        fal_emulator.configure(concurrency=3)
        assert [state_of(client, i) for i in ids] == ["IN_PROGRESS"] * 3
    assert fal_emulator.counters()["max_in_progress"] == 3


def test_log_lines_name_calls_but_never_the_key(fal_emulator, caplog):
    caplog.set_level(logging.INFO, logger="airflow_provider_sam3.testing.emulator")
    fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError):
        fal_client.SyncClient(key="wrong-secret-key").submit(IMAGE_ENDPOINT, arguments=ARGS)
    wait_until(lambda: any("-> 401" in r.getMessage() for r in caplog.records))
    lines = [r.getMessage() for r in caplog.records]
    submit = next(line for line in lines if line.startswith(f"POST /{IMAGE_ENDPOINT} -> 200"))
    assert '{"image_url":"data:image/png;base64,' in submit and submit.endswith("...")
    assert len(submit) < 300
    assert any(line.startswith("GET /fal-ai/sam-3/requests/") and "/status?logs=false -> 200" in line for line in lines)
    text = "\n".join(lines)
    assert fal_emulator.api_key not in text and "wrong-secret-key" not in text and "Authorization" not in text


def test_python_api_outside_the_fixture(tmp_path):
    config = EmulatorConfig(api_key="own-key", service_time_s=0.0, cert_dir=str(tmp_path))
    with FalEmulator(config, concurrency=3) as emulator:
        assert emulator.env == {
            "FAL_QUEUE_RUN_HOST": emulator.host,
            "SSL_CERT_FILE": str(tmp_path / "cert.pem"),
            "FAL_KEY": "own-key",
        }
        assert emulator.config.concurrency == 3 and emulator.base_url == f"https://{emulator.host}"
        rule = emulator.add_fault(FaultRule(kind="vanish", target="result", every=2))
        assert emulator.config.faults == [rule]
        with pytest.raises(ValueError):
            emulator.configure(cert_dir="/elsewhere")
        with raw_client(emulator) as client:
            request_id = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS).json()["request_id"]
            wait_until(lambda: state_of(client, request_id) == "COMPLETED")
            assert client.get(f"/fal-ai/sam-3/requests/{request_id}").status_code == 200
            assert client.get(f"/fal-ai/sam-3/requests/{request_id}").status_code == 404
        emulator.reset(restore_config=True)
        assert emulator.config.faults == [] and emulator.config.concurrency == 3
    with pytest.raises(RuntimeError, match="not running"):
        emulator.counters()
