"""FalHook's whole queue cycle against the emulator, sync and async: submit, status, wait, result, download."""

from __future__ import annotations

import asyncio
import io
import time

import pytest
from hook_helpers import ARGS, HEIGHT, IMAGE_APP, IMAGE_ENDPOINT, SQUARE, WIDTH, square_png
from PIL import Image

from airflow_provider_sam3.endpoints import get_endpoint
from airflow_provider_sam3.exceptions import FalDeadlineExceededError, FalResultUnavailableError
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.models.reference import RequestReference

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STATE_ORDER = {"IN_QUEUE": 0, "IN_PROGRESS": 1, "COMPLETED": 2}


def _assert_reference_points_at_emulator(ref: RequestReference, emulator, endpoint_id: str = IMAGE_ENDPOINT) -> None:
    base = f"https://{emulator.host}/{IMAGE_APP}/requests/{ref.request_id}"
    assert ref.endpoint_id == endpoint_id
    # fal's URLs name the app, not the endpoint's sub-path (/image): the hook must use them verbatim.
    assert (ref.response_url, ref.status_url, ref.cancel_url) == (base, f"{base}/status", f"{base}/cancel")
    checked_at = time.time()
    assert ref.submitted_at is not None and ref.submitted_at <= checked_at  # stamped at submit, not later
    assert RequestReference.from_dict(ref.to_dict()) == ref


def _assert_mask_png(data: bytes) -> None:
    assert data[:8] == PNG_MAGIC
    mask = Image.open(io.BytesIO(data))
    assert mask.size == (WIDTH, HEIGHT)
    x0, y0, x1, y1 = SQUARE
    assert mask.convert("L").getbbox() == (x0, y0, x1 + 1, y1 + 1)


def _assert_monotonic(states: list[str]) -> None:
    ranks = [STATE_ORDER[s] for s in states]
    assert ranks == sorted(ranks), states


def test_sync_full_cycle_polls_sparingly_and_parses_with_the_registry(fal_emulator, fal_conn):
    fal_emulator.configure(service_time_s=1.0)
    fal_conn(poll_interval=0.3)
    hook = FalHook()
    assert hook.get_settings().poll_interval == 0.3

    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    _assert_reference_points_at_emulator(ref, fal_emulator)

    first = hook.status(ref)
    assert first.state in ("IN_QUEUE", "IN_PROGRESS") and not first.done

    seen = []
    final = hook.wait(ref, on_status=seen.append)
    assert final.state == "COMPLETED" and final.done and final.error is None
    assert final.metrics["inference_time"] >= 0.9
    assert final.logs, "wait() asks for logs by default"
    _assert_monotonic([first.state] + [s.state for s in seen])
    assert seen[-1] == final and all(not s.done for s in seen[:-1])

    # 1.0 s of service polled from 0.3 s up by 1.5x: a handful of calls, where 0.1 s polling would make ~10.
    status_calls = fal_emulator.counters()["status_calls"]
    assert 2 <= status_calls <= 8, status_calls

    raw = hook.result(ref)
    output = get_endpoint(IMAGE_ENDPOINT).parse_output(raw)
    assert len(output.masks) == 1
    assert (output.masks[0].width, output.masks[0].height) == (WIDTH, HEIGHT)
    assert output.masks[0].url.startswith(fal_emulator.base_url + "/")
    _assert_mask_png(hook.download(output.masks[0].url))

    counters = fal_emulator.counters()
    assert counters["submissions"] == {"total": 1, "by_endpoint": {IMAGE_ENDPOINT: 1}}
    assert counters["result_calls"] == 1 and counters["faults"]["total"] == 0


def test_async_full_cycle(fal_emulator, fal_conn):
    fal_emulator.configure(service_time_s=0.4)

    async def cycle():
        hook = FalHook()
        try:
            ref = await hook.asubmit(IMAGE_ENDPOINT, ARGS)
            states = []
            while True:
                status = await hook.astatus(ref, with_logs=True)
                states.append(status.state)
                if status.done:
                    break
                await asyncio.sleep(0.1)
            raw = await hook.aresult(ref)
            output = get_endpoint(IMAGE_ENDPOINT).parse_output(raw)
            png = await hook.adownload(output.masks[0].url)
            outcome = await hook.acancel(ref)
            http = await hook._async_client._client  # fal_client's cached httpx.AsyncClient
            return ref, states, status, output, png, outcome, hook, http
        finally:
            await hook.aclose()

    ref, states, status, output, png, outcome, hook, http = asyncio.run(cycle())
    _assert_reference_points_at_emulator(ref, fal_emulator)
    assert states[0] != "COMPLETED" and states[-1] == "COMPLETED"
    _assert_monotonic(states)
    assert status.error is None and status.logs
    assert (output.masks[0].width, output.masks[0].height) == (WIDTH, HEIGHT)
    _assert_mask_png(png)
    assert outcome == "ALREADY_COMPLETED"
    # aclose() really closed fal_client's httpx client and forgot it.
    assert hook._async_client is None and http is not None and http.is_closed
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 1 and counters["result_calls"] == 1
    assert counters["status_calls"] == len(states)


def test_submit_options_reach_the_queue(fal_emulator, fal_conn):
    hook = FalHook()
    webhook = "https://hooks.example.invalid/fal"  # not loopback: the emulator records it but never calls it
    ref = hook.submit(IMAGE_ENDPOINT, ARGS, priority="low", start_timeout=30, hint="gpu-a", webhook_url=webhook)
    [record] = fal_emulator.requests()
    assert record["request_id"] == ref.request_id
    assert record["priority"] == "low"
    assert record["start_timeout_s"] == 30.0
    assert record["runner_hint"] == "gpu-a"
    assert record["webhook_url"] == webhook
    assert hook.wait(ref).error is None


def test_async_submit_options_reach_the_queue(fal_emulator, fal_conn):
    async def go():
        hook = FalHook()
        try:
            return await hook.asubmit(IMAGE_ENDPOINT, ARGS, priority="low", start_timeout=12.5, hint="h1")
        finally:
            await hook.aclose()

    ref = asyncio.run(go())
    [record] = fal_emulator.requests()
    assert record["request_id"] == ref.request_id
    assert (record["priority"], record["start_timeout_s"], record["runner_hint"]) == ("low", 12.5, "h1")


def test_submit_accepts_a_validated_input_model(fal_emulator, fal_conn):
    hook = FalHook()
    inputs = get_endpoint(IMAGE_ENDPOINT).validate_input({**ARGS, "sync_mode": True})
    ref = hook.submit(IMAGE_ENDPOINT, inputs)
    assert hook.wait(ref).error is None
    output = get_endpoint(IMAGE_ENDPOINT).parse_output(hook.result(ref))
    # sync_mode: the mask comes back as a data URI, which download() decodes without any HTTP call.
    assert output.masks[0].url.startswith("data:image/png;base64,")
    _assert_mask_png(hook.download(output.masks[0].url))


def test_wait_raises_when_its_deadline_passes(fal_emulator, fal_conn):
    fal_emulator.configure(service_time_s=120.0)  # a wait that ignored its deadline would return the result
    fal_conn(poll_interval=0.2)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    with pytest.raises(FalDeadlineExceededError) as raised:
        hook.wait(ref, deadline=time.time() + 0.5)
    assert raised.value.request_id == ref.request_id and raised.value.endpoint_id == IMAGE_ENDPOINT
    assert "deadline" in str(raised.value)
    assert hook.cancel(ref) == "CANCELLATION_REQUESTED"


def test_wait_polls_at_the_intervals_it_is_given_over_the_connection_s(fal_emulator, fal_conn):
    fal_emulator.configure(service_time_s=3.0)
    fal_conn(poll_interval=30.0)  # the connection's pause would allow 2 polls: one now, one after 30 s
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    seen = []
    final = hook.wait(ref, on_status=seen.append, poll_interval=0.1, max_poll_interval=0.5)
    assert final.done and len(seen) >= 3, [status.state for status in seen]
    assert hook.get_settings().poll_interval == 30.0  # the override did not change the hook's settings


def test_expired_media_download_says_the_file_is_gone(fal_emulator, fal_conn):
    fal_emulator.configure(media_ttl_s=0.2)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(ref)
    url = get_endpoint(IMAGE_ENDPOINT).parse_output(hook.result(ref)).masks[0].url
    time.sleep(0.4)
    with pytest.raises(FalResultUnavailableError) as raised:
        hook.download(url)
    assert "404" in str(raised.value) and "expire" in str(raised.value)
    assert raised.value.retryable is False


def test_upload_then_segment_the_uploaded_file(fal_emulator, fal_conn, monkeypatch):
    import fal_client.client

    # fal's storage hosts are module constants of fal_client; point them at the emulator (as its own tests do).
    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    hook = FalHook()
    url = hook.upload(square_png(), "image/png", "photo.png")
    assert url.startswith(fal_emulator.base_url) and url.endswith("/photo.png")
    assert hook.download(url) == square_png()
    ref = hook.submit(IMAGE_ENDPOINT, {"image_url": url, "prompt": "square"})
    hook.wait(ref)
    _assert_mask_png(hook.download(get_endpoint(IMAGE_ENDPOINT).parse_output(hook.result(ref)).masks[0].url))


def test_queue_positions_count_down_to_in_progress(fal_emulator, fal_conn):
    fal_emulator.configure(concurrency=1, service_time_s=0.3)
    hook = FalHook()
    refs = [hook.submit(IMAGE_ENDPOINT, ARGS) for _ in range(5)]
    last = refs[-1]
    positions, states = [], []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = hook.status(last)
        states.append(status.state)
        if status.state == "IN_QUEUE":
            positions.append(status.queue_position)
        else:
            break
        time.sleep(0.05)
    assert states[-1] == "IN_PROGRESS", states
    _assert_monotonic(states)
    assert positions[0] == 3, positions  # 1 running, 3 queued ahead of it (fal's positions are 0-indexed)
    assert positions == sorted(positions, reverse=True), positions
    assert len(set(positions)) >= 3, positions  # it really counted down, not just jumped to the front
    assert fal_emulator.counters()["max_in_progress"] == 1
