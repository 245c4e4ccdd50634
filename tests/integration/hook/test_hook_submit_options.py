"""FalHook.submit/asubmit with SubmitOptions: fal's queue headers as the emulator received them, sync and async."""

from __future__ import annotations

import asyncio

from hook_helpers import ARGS, IMAGE_ENDPOINT

from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.operators.preflight import check_submit_options

OPTIONS = check_submit_options(
    priority="low",
    start_timeout=600,
    hint="gpu-a",
    webhook_url="https://hooks.example/fal",
    media_expires_in="1h",
    store_io=False,
)
EXPECTED_HEADERS = {
    "x-fal-queue-priority": "low",
    "x-fal-request-timeout": "600.0",
    "x-fal-runner-hint": "gpu-a",
    "x-fal-object-lifecycle-preference": '{"expiration_duration_seconds": 3600}',
    "x-fal-store-io": "0",
}


def _received(emulator, request_id):
    (record,) = [r for r in emulator.requests() if r["request_id"] == request_id]
    return record


def test_submit_and_asubmit_send_every_option_as_fals_header(fal_emulator, fal_conn):
    hook = FalHook()
    sync_ref = hook.submit(IMAGE_ENDPOINT, ARGS, options=OPTIONS)

    async def submit_async():
        async_hook = FalHook()
        try:
            return await async_hook.asubmit(IMAGE_ENDPOINT, ARGS, options=OPTIONS)
        finally:
            await async_hook.aclose()

    async_ref = asyncio.run(submit_async())
    for ref in (sync_ref, async_ref):
        record = _received(fal_emulator, ref.request_id)
        assert record["headers"] == EXPECTED_HEADERS
        assert record["webhook_url"] == "https://hooks.example/fal" and record["priority"] == "low"
    assert "authorization" not in str(fal_emulator.requests()).lower()  # the key is never recorded


def test_submit_without_options_sends_no_queue_headers_as_before(fal_emulator, fal_conn):
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS)
    assert _received(fal_emulator, ref.request_id)["headers"] == {}
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS, priority="normal", hint="warm")  # the older keywords still work
    assert _received(fal_emulator, ref.request_id)["headers"] == {
        "x-fal-queue-priority": "normal",
        "x-fal-runner-hint": "warm",
    }
