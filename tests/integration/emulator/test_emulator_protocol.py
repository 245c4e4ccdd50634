"""fal's queue protocol as the stock fal_client (sync and async) and raw HTTPS see it from the emulator."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fal_client
import httpx
import pytest
from emulator_helpers import (
    IMAGE_APP,
    IMAGE_ENDPOINT,
    png_bytes,
    png_data_uri,
    raw_client,
    squares_image,
    state_of,
    status_of,
    wait_until,
)

ARGS = {"image_url": png_data_uri(squares_image()), "prompt": "square"}


@pytest.fixture
def client(fal_emulator) -> Iterator[httpx.Client]:
    with raw_client(fal_emulator) as http:
        yield http


def _submit(client: httpx.Client, arguments: dict | None = None, endpoint: str = IMAGE_ENDPOINT, **kwargs) -> dict:
    response = client.post(f"/{endpoint}", json=ARGS if arguments is None else arguments, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_submit_returns_urls_to_the_emulator_without_the_sub_path(fal_emulator, client):
    response = client.post(f"/{IMAGE_ENDPOINT}", json=ARGS)
    body = response.json()
    request_id = body["request_id"]
    base = f"https://{fal_emulator.host}/fal-ai/sam-3/requests/{request_id}"
    assert body == {
        "status": "IN_QUEUE",
        "request_id": request_id,
        "queue_position": 0,
        "response_url": base,
        "status_url": f"{base}/status",
        "cancel_url": f"{base}/cancel",
    }
    assert response.headers["x-fal-request-id"] == request_id
    status = status_of(client, request_id)
    assert status.headers["x-fal-request-id"] == request_id
    assert {"request_id", "response_url", "status_url", "cancel_url"} <= status.json().keys()


def test_stock_sync_client_submit_status_result(fal_emulator):
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS)
    assert handle.status_url.startswith(f"https://{fal_emulator.host}/fal-ai/sam-3/requests/")
    events = list(handle.iter_events(with_logs=True, interval=0.02))
    assert isinstance(events[-1], fal_client.Completed)
    assert events[-1].metrics["inference_time"] >= 0.04
    assert [log["source"] for log in events[-1].logs] == ["USER"] * 3
    status = fal_client.status(IMAGE_ENDPOINT, handle.request_id, with_logs=False)
    assert isinstance(status, fal_client.Completed) and status.logs is None and status.error is None
    result = fal_client.result(IMAGE_ENDPOINT, handle.request_id)
    assert result == handle.get()
    assert result["masks"][0]["width"] == 160 and result["masks"][0]["height"] == 120
    assert fal_emulator.counters()["submissions"] == {"total": 1, "by_endpoint": {IMAGE_ENDPOINT: 1}}


def test_stock_async_client_subscribe_and_handles(fal_emulator):
    async def scenario() -> tuple[dict, list, dict]:
        client = fal_client.AsyncClient()
        updates: list = []
        result = await client.subscribe(IMAGE_ENDPOINT, arguments=ARGS, with_logs=True, on_queue_update=updates.append)
        handle = await client.submit("fal-ai/sam-3/image-rle", arguments=ARGS)
        again = await (await client.get_handle("fal-ai/sam-3/image-rle", handle.request_id)).get()
        return result, updates, again

    result, updates, rle = asyncio.run(scenario())
    assert result["masks"] and isinstance(updates[-1], fal_client.Completed)
    assert isinstance(rle["rle"], str) and rle["rle"]
    assert fal_emulator.counters()["submissions"]["total"] == 2


def test_status_url_keeping_the_sub_path_is_405_and_other_apps_are_404(fal_emulator, client):
    request_id = _submit(client)["request_id"]
    assert client.get(f"/{IMAGE_ENDPOINT}/requests/{request_id}/status").status_code == 405
    assert client.get(f"/{IMAGE_ENDPOINT}/requests/{request_id}").status_code == 405
    assert client.get(f"/fal-ai/sam-3-1/requests/{request_id}/status").status_code == 404
    assert client.get(f"/{IMAGE_APP}/requests/00000000-0000-4000-8000-000000000000/status").status_code == 404
    assert client.get(f"/fal-ai/other/requests/{request_id}/status").status_code == 404
    assert client.post("/fal-ai/sam-3/not-an-endpoint", json=ARGS).status_code == 404
    assert client.get(f"/{IMAGE_ENDPOINT}").status_code == 405
    assert isinstance(fal_client.status(IMAGE_ENDPOINT, request_id), fal_client.Status)


def test_wrong_or_missing_key_is_401_and_exhausted_key_is_403(fal_emulator):
    with pytest.raises(fal_client.FalClientHTTPError) as wrong:
        fal_client.SyncClient(key="not-the-key").submit(IMAGE_ENDPOINT, arguments=ARGS)
    assert wrong.value.status_code == 401
    with raw_client(fal_emulator, key=None) as anonymous:
        assert anonymous.post(f"/{IMAGE_ENDPOINT}", json=ARGS).status_code == 401
        assert anonymous.get(f"/{IMAGE_APP}/requests/x/status").status_code == 401
    fal_emulator.configure(exhausted_keys=["broke-key"])
    with pytest.raises(fal_client.FalClientHTTPError) as locked:
        fal_client.SyncClient(key="broke-key").submit(IMAGE_ENDPOINT, arguments=ARGS)
    assert locked.value.status_code == 403
    assert locked.value.message == "User is locked. Reason: Exhausted balance."
    assert fal_emulator.counters()["submissions"]["total"] == 0


@pytest.mark.parametrize(
    ("value", "listed"), [("true", True), ("1", True), ("false", False), ("0", False), ("yes", False), (None, False)]
)
def test_logs_parameter_forms(fal_emulator, client, value, listed):
    fal_emulator.configure(service_time_s=0.6, in_progress_logs=3)
    request_id = _submit(client)["request_id"]
    running = wait_until(
        lambda: (r := status_of(client, request_id, logs=value)).json()["status"] == "IN_PROGRESS" and r
    )
    assert running.status_code == 202
    if listed:
        wait_until(lambda: status_of(client, request_id, logs=value).json()["logs"])
    else:
        assert running.json()["logs"] is None
    done = wait_until(lambda: (r := status_of(client, request_id, logs=value)).status_code == 200 and r).json()
    assert done["status"] == "COMPLETED"
    if listed:
        assert len(done["logs"]) == 3
        assert {"message", "level", "source", "timestamp"} == done["logs"][0].keys()
    else:
        assert done["logs"] is None


def test_queue_position_and_result_before_completion(fal_emulator, client):
    fal_emulator.configure(service_time_s=0.5, concurrency=1)
    first, second = _submit(client), _submit(client)
    assert (first["queue_position"], second["queue_position"]) == (0, 0)
    third = _submit(client)
    assert third["queue_position"] == 1
    queued = status_of(client, third["request_id"])
    assert queued.status_code == 202 and queued.json()["queue_position"] == 1
    early = client.get(f"/{IMAGE_APP}/requests/{first['request_id']}")
    assert (early.status_code, early.json()) == (400, {"detail": "Request is still in progress"})
    assert client.get(f"/{IMAGE_APP}/requests/{third['request_id']}").status_code == 400


def test_result_expires_after_retention_and_large_results_sooner(fal_emulator, client):
    fal_emulator.configure(result_retention_s=0.8, large_result_retention_s=0.8)
    small = _submit(client)["request_id"]
    wait_until(lambda: state_of(client, small) == "COMPLETED")
    assert client.get(f"/{IMAGE_APP}/requests/{small}").status_code == 200
    time.sleep(0.9)
    assert client.get(f"/{IMAGE_APP}/requests/{small}").status_code == 404
    assert state_of(client, small) == "COMPLETED"

    fal_emulator.configure(result_retention_s=60, large_result_retention_s=0.3)
    big = _submit(client, {"image_url": ARGS["image_url"]}, "fal-ai/sam-3/image/embed")["request_id"]
    little = _submit(client)["request_id"]
    wait_until(lambda: state_of(client, big) == state_of(client, little) == "COMPLETED")
    time.sleep(0.4)
    assert client.get(f"/{IMAGE_APP}/requests/{big}").status_code == 404
    assert client.get(f"/{IMAGE_APP}/requests/{little}").status_code == 200
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        fal_client.result("fal-ai/sam-3/image/embed", big)
    assert raised.value.status_code == 404


def test_media_expires_after_media_ttl(fal_emulator, client):
    fal_emulator.configure(media_ttl_s=1.5)
    result = fal_client.subscribe(IMAGE_ENDPOINT, arguments=ARGS)
    url = result["masks"][0]["url"]
    first = client.get(url)
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    assert first.content.startswith(b"\x89PNG")
    time.sleep(1.6)
    assert client.get(url).status_code == 404


def test_cancel_outcomes_and_counts(fal_emulator, client):
    fal_emulator.configure(service_time_s=120.0, concurrency=1)
    running, queued = _submit(client)["request_id"], _submit(client)["request_id"]
    assert state_of(client, running) == "IN_PROGRESS" and state_of(client, queued) == "IN_QUEUE"

    response = client.put(f"/{IMAGE_APP}/requests/{queued}/cancel")
    assert (response.status_code, response.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    status = status_of(client, queued).json()
    assert status["status"] == "COMPLETED" and status["error"]
    assert client.get(f"/{IMAGE_APP}/requests/{queued}").status_code == 499

    fal_client.cancel(IMAGE_ENDPOINT, running)
    # It runs for 120 s unless the cancel interrupts it: completing at all is the event (the timeout: a hang guard).
    wait_until(lambda: state_of(client, running) == "COMPLETED", timeout=30)
    cancelled = client.get(f"/{IMAGE_APP}/requests/{running}")
    assert (cancelled.status_code, cancelled.json()) == (499, {"detail": "Request cancelled"})

    with pytest.raises(fal_client.FalClientHTTPError) as again:
        fal_client.cancel(IMAGE_ENDPOINT, running)
    assert again.value.status_code == 400 and again.value.response.json() == {"status": "ALREADY_COMPLETED"}
    unknown = client.put(f"/{IMAGE_APP}/requests/00000000-0000-4000-8000-000000000000/cancel")
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})

    counters = fal_emulator.counters()
    assert counters["cancels"] == {"total": 3, "by_endpoint": {IMAGE_ENDPOINT: 3}}
    assert counters["in_progress"] == 0 and counters["queue_length"] == 0
    assert {r["request_id"]: r["cancelled"] for r in fal_emulator.requests()} == {running: True, queued: True}


def test_low_priority_waits_behind_normal(fal_emulator, client):
    fal_emulator.configure(service_time_s=0.2, concurrency=1)
    _submit(client)
    low = _submit(client, headers={"X-Fal-Queue-Priority": "low"})["request_id"]
    normal = _submit(client, headers={"X-Fal-Queue-Priority": "normal"})["request_id"]
    assert status_of(client, low).json()["queue_position"] == 1
    assert status_of(client, normal).json()["queue_position"] == 0
    wait_until(lambda: state_of(client, low) == "COMPLETED")
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    assert records[normal]["started_at"] < records[low]["started_at"]
    assert records[low]["priority"] == "low"


def test_start_timeout_completes_with_504_user_timeout(fal_emulator, client):
    fal_emulator.configure(service_time_s=3.0, concurrency=1)
    blocker = _submit(client)["request_id"]
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=ARGS, start_timeout=1.2, hint="runner-7")
    assert state_of(client, handle.request_id) == "IN_QUEUE"
    status = wait_until(lambda: isinstance(s := handle.status(), fal_client.Completed) and s, timeout=3)
    assert status.error_type == "request_timeout"
    with pytest.raises(fal_client.FalClientHTTPError) as raised:
        handle.get()
    assert raised.value.status_code == 504
    assert raised.value.response_headers["x-fal-request-timeout-type"] == "user"
    assert raised.value.error_type == "request_timeout"
    record = {r["request_id"]: r for r in fal_emulator.requests()}[handle.request_id]
    assert record["runner_hint"] == "runner-7" and record["start_timeout_s"] == 1.2 and record["started_at"] is None
    fal_client.cancel(IMAGE_ENDPOINT, blocker)


def test_sse_stream_yields_statuses_and_closes(fal_emulator, client):
    fal_emulator.configure(service_time_s=0.4, concurrency=1, sse_keepalive_s=0.1, in_progress_logs=1)
    _submit(client)
    request_id = _submit(client)["request_id"]
    events, comments = [], 0
    with client.stream("GET", f"/{IMAGE_APP}/requests/{request_id}/status/stream", params={"logs": "1"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            elif line.startswith(":"):
                comments += 1
    states = [e["status"] for e in events]
    assert states[0] == "IN_QUEUE" and states[-1] == "COMPLETED" and "IN_PROGRESS" in states
    assert states.index("IN_PROGRESS") > states.index("IN_QUEUE")
    assert events[-1]["logs"] and events[-1]["request_id"] == request_id
    assert comments >= 2
    assert fal_emulator.counters()["stream_calls"] == 1


class _LocalSite(BaseHTTPRequestHandler):
    """A loopback HTTP site: serves one PNG and records webhook POSTs."""

    png = b""
    posts: list[dict] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.png)))
        self.end_headers()
        self.wfile.write(self.png)

    def do_POST(self) -> None:
        self.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_site() -> Iterator[str]:
    _LocalSite.png = png_bytes(squares_image(90, 70, [(20, 20, 60, 50)]))
    _LocalSite.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LocalSite)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_webhook_and_loopback_image_urls(fal_emulator, local_site):
    arguments = {"image_url": f"{local_site}/photo.png", "prompt": "box"}
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments=arguments, webhook_url=f"{local_site}/hook")
    result = handle.get()
    assert (result["masks"][0]["width"], result["masks"][0]["height"]) == (90, 70)
    wait_until(lambda: _LocalSite.posts)
    [payload] = _LocalSite.posts
    assert payload["request_id"] == handle.request_id and payload["status"] == "OK"
    assert payload["payload"] == result and payload["gateway_request_id"]
    assert fal_emulator.counters()["webhooks"] == {"sent": 1, "failed": 0}
    assert fal_emulator.requests()[0]["webhook_url"] == f"{local_site}/hook"


def test_failed_request_webhook_reports_error(fal_emulator, local_site):
    handle = fal_client.submit(IMAGE_ENDPOINT, arguments={**ARGS, "max_masks": 0}, webhook_url=f"{local_site}/hook")
    with pytest.raises(fal_client.FalClientHTTPError):
        handle.get()
    wait_until(lambda: _LocalSite.posts)
    assert _LocalSite.posts[0]["status"] == "ERROR"
    assert _LocalSite.posts[0]["payload"]["detail"][0]["loc"] == ["body", "max_masks"]


def test_hosted_inputs_and_fal_client_upload(fal_emulator, monkeypatch):
    url = fal_emulator.host_file(png_bytes(squares_image(50, 40, [(10, 10, 30, 30)])), "in.png", "image/png")
    assert url.startswith(fal_emulator.base_url)
    result = fal_client.subscribe(IMAGE_ENDPOINT, arguments={"image_url": url, "prompt": "box"})
    assert result["masks"][0]["width"] == 50

    import fal_client.client as client_module

    monkeypatch.setattr(client_module, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(client_module, "CDN_URL", fal_emulator.base_url)
    uploaded = fal_client.SyncClient().upload(png_bytes(squares_image(30, 20, [(5, 5, 20, 15)])), "image/png", "up.png")
    assert uploaded.startswith(fal_emulator.base_url) and uploaded.endswith("/up.png")
    result = fal_client.subscribe(IMAGE_ENDPOINT, arguments={"image_url": uploaded, "prompt": "box"})
    assert (result["masks"][0]["width"], result["masks"][0]["height"]) == (30, 20)


def test_a_multipart_upload_as_fal_client_sends_it(fal_emulator, monkeypatch):
    """Above fal-client's multipart threshold the upload goes in parts; the emulator joins them in order, serves
    the file at the URL fal-client returns, and counts one upload."""
    import fal_client
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "MULTIPART_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(fal_client.client, "MULTIPART_CHUNK_SIZE", 256 * 1024)
    parts = []
    send_part = fal_client.client.MultipartUpload.upload_part

    def counted(self, part_number, chunk):
        parts.append(part_number)
        return send_part(self, part_number, chunk)

    monkeypatch.setattr(fal_client.client.MultipartUpload, "upload_part", counted)
    data = bytes(range(256)) * (5 * 1024 + 7)  # 5 parts and a bit
    url = fal_client.SyncClient().upload(data, "video/mp4", "clip.mp4")
    assert sorted(parts) == [1, 2, 3, 4, 5, 6]
    assert url.startswith(fal_emulator.base_url) and url.endswith("/clip.mp4")
    assert fal_emulator.counters()["uploads"] == {"total": 1, "bytes": len(data)}
    import httpx

    fetched = httpx.get(url, verify=fal_emulator.env["SSL_CERT_FILE"])
    assert fetched.status_code == 200 and fetched.content == data
