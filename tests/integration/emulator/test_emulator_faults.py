"""Each injected fault, and what the stock fal_client does with it."""

from __future__ import annotations

import fal_client
import httpx
import pytest
from emulator_helpers import IMAGE_APP, IMAGE_ENDPOINT, png_data_uri, raw_client, squares_image, state_of, wait_until

ARGS = {"image_url": png_data_uri(squares_image()), "prompt": "square"}


@pytest.mark.parametrize("kind", ["nginx_502", "nginx_503", "nginx_504"])
@pytest.mark.parametrize("target", ["submit", "status", "result"])
def test_nginx_errors_are_retried_by_fal_client(fal_emulator, kind, target):
    fal_emulator.add_fault(kind, target=target, first=2)
    result = fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)
    assert result["masks"]
    counters = fal_emulator.counters()
    assert counters["faults"]["by_kind"] == {kind: 2}
    assert counters["submissions"]["total"] == 1


def test_nginx_error_body_and_headers(fal_emulator):
    fal_emulator.add_fault("nginx_502", target="submit", first=1)
    with raw_client(fal_emulator) as client:
        response = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS)
    assert response.status_code == 502 and "nginx" in response.text
    assert "x-fal-request-id" not in response.headers


def test_rate_limit_429_is_retried(fal_emulator):
    fal_emulator.add_fault("rate_limit_429", target="submit", first=3)
    assert fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)["masks"]
    assert fal_emulator.counters()["faults"]["by_kind"] == {"rate_limit_429": 3}


def test_runner_503_is_not_retried_and_carries_request_id(fal_emulator):
    fal_emulator.add_fault("runner_503", target="result", first=1)
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()
    error = raised.value
    assert error.status_code == 503 and error.error_type == "runner_connection_refused"
    assert error.response_headers["x-fal-request-id"] == handle.request_id
    assert error.response_headers["x-fal-error-type"] == "runner_connection_refused"
    assert fal_emulator.counters()["result_calls"] == 1
    assert handle.get()["masks"]


def test_dropped_connection_is_a_transport_error_that_fal_client_retries(fal_emulator):
    fal_emulator.add_fault("drop_connection", target="status", first=1)
    with raw_client(fal_emulator) as client:
        request_id = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS).json()["request_id"]
        with pytest.raises(httpx.RemoteProtocolError):
            client.get(f"/{IMAGE_APP}/requests/{request_id}/status")
        assert state_of(client, request_id) in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    fal_emulator.add_fault("drop_connection", target="result", first=1)
    assert fal_client.result(IMAGE_ENDPOINT, request_id)["masks"]
    assert fal_emulator.counters()["faults"]["by_kind"] == {"drop_connection": 2}


def test_dropped_submit_response_is_retried_and_bills_twice(fal_emulator):
    fal_emulator.add_fault("drop_connection", target="submit", first=1)
    assert fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)["masks"]
    assert fal_emulator.counters()["submissions"]["total"] == 2


def test_slow_response_outlasts_a_client_timeout(fal_emulator):
    fal_emulator.add_fault("slow_response", target="status", first=1, delay_s=1.0)
    with raw_client(fal_emulator, timeout=0.3) as client:
        request_id = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS).json()["request_id"]
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"/{IMAGE_APP}/requests/{request_id}/status")
        assert state_of(client, request_id) in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")


def test_vanished_request_is_404_everywhere(fal_emulator):
    fal_emulator.add_fault("vanish", target="status", first=1)
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.status()
    assert raised.value.status_code == 404
    with pytest.raises(fal_client.FalClientHTTPError) as again:
        fal_client.result(IMAGE_ENDPOINT, handle.request_id)
    assert again.value.status_code == 404
    assert fal_emulator.requests() == []


def test_vanish_at_submit_returns_an_id_nobody_knows(fal_emulator):
    fal_emulator.add_fault("vanish", target="submit", first=1)
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.status()
    assert raised.value.status_code == 404
    assert fal_emulator.counters()["submissions"]["total"] == 1


def test_app_500_completes_with_error_and_result_500(fal_emulator):
    fal_emulator.add_fault("app_500", first=1)
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    status = wait_until(lambda: isinstance(s := handle.status(), fal_client.Completed) and s)
    assert status.error == "Internal Server Error" and status.error_type == "internal_error"
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()
    assert raised.value.status_code == 500 and raised.value.message == "Internal Server Error"
    assert fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)["masks"]


def test_expire_early_loses_the_result_at_completion(fal_emulator):
    fal_emulator.add_fault("expire_early", target="submit", first=1)
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()
    assert raised.value.status_code == 404
    assert isinstance(handle.status(), fal_client.Completed)
    assert fal_emulator.requests()[0]["result_expired"] is True


def test_faults_target_one_endpoint_and_cancel(fal_emulator):
    fal_emulator.add_fault("runner_503", target="any", endpoint_id="fal-ai/sam-3/image-rle", first=1)
    fal_emulator.add_fault("runner_503", target="cancel", first=1)
    assert fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)["masks"]
    with pytest.raises(fal_client.FalClientHTTPError):
        fal_client.submit("fal-ai/sam-3/image-rle", arguments=ARGS)
    handle = fal_client.submit("fal-ai/sam-3/image-rle", arguments=ARGS)
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.cancel()
    assert raised.value.status_code == 503
    assert fal_emulator.counters()["faults"]["by_kind"] == {"runner_503": 2}
    assert fal_emulator.counters()["submissions"]["by_endpoint"] == {IMAGE_ENDPOINT: 1, "fal-ai/sam-3/image-rle": 1}


def test_reset_clears_faults_and_rate_faults_use_the_seed(fal_emulator):
    fal_emulator.configure(seed=11, faults=[{"kind": "nginx_503", "target": "status", "rate": 0.5}])
    with raw_client(fal_emulator) as client:
        request_id = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS).json()["request_id"]
        codes = [client.get(f"/{IMAGE_APP}/requests/{request_id}/status").status_code for _ in range(12)]
        fal_emulator.configure(seed=11)
        again = [client.get(f"/{IMAGE_APP}/requests/{request_id}/status").status_code for _ in range(12)]
    faulted = [code == 503 for code in codes]  # whether a call succeeded with 202 or 200 depends on timing
    assert any(faulted) and not all(faulted)
    assert faulted == [code == 503 for code in again]  # the same seed injects faults at the same calls
    fal_emulator.reset()
    assert fal_emulator.config.faults == []
    assert fal_emulator.counters()["faults"] == {"total": 0, "by_kind": {}}
