"""FalRequestTrigger against the emulator: rebuilt from kwargs mid-wait, deadline and on_kill cancel (unless the
waiting task does not own the request, or it already runs), polling backs off."""

from __future__ import annotations

import asyncio
import importlib
import json
import time

from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.triggers.fal import FalRequestTrigger


def submit(fal_emulator, service_time: float):
    from PIL import Image

    from airflow_provider_sam3.media.inputs import prepare_image

    fal_emulator.configure(service_time_s=service_time)
    image = Image.new("RGB", (40, 30), (10, 10, 10))
    image.paste((250, 250, 250), (10, 10, 30, 20))
    return FalHook().submit("fal-ai/sam-3/image", {"image_url": prepare_image(image).url, "prompt": "x"})


async def first_event(trigger: FalRequestTrigger, timeout: float = 20):
    runner = trigger.run()
    try:
        return await asyncio.wait_for(runner.__anext__(), timeout)
    finally:
        await runner.aclose()


def rebuild(trigger: FalRequestTrigger) -> FalRequestTrigger:
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


def test_trigger_rebuilt_from_kwargs_mid_wait_finishes_the_same_request(fal_emulator):
    reference = submit(fal_emulator, service_time=2.0)
    trigger = FalRequestTrigger(reference.to_dict(), deadline=time.time() + 60, poll_interval=0.2)

    async def scenario():
        waiting = asyncio.ensure_future(first_event(trigger))
        await asyncio.sleep(0.8)  # mid-wait: the request is running
        waiting.cancel()  # what a triggerer restart does to the running trigger
        try:
            await waiting
        except asyncio.CancelledError:
            pass
        return await first_event(rebuild(trigger))

    event = asyncio.run(scenario())
    assert event.payload["status"] == "completed" and event.payload["error"] is None
    assert event.payload["reference"]["request_id"] == reference.request_id
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 1
    assert counters["cancels"]["total"] == 0  # a restart is not a user's clear: nothing is cancelled


def test_deadline_cancels_the_remote_request(fal_emulator):
    reference = submit(fal_emulator, service_time=30.0)
    trigger = FalRequestTrigger(reference.to_dict(), deadline=time.time() + 1.0, poll_interval=0.2)
    event = asyncio.run(first_event(trigger))
    assert event.payload["status"] == "timeout"
    assert event.payload["cancel"] == "CANCELLATION_REQUESTED"
    assert fal_emulator.counters()["cancels"]["total"] == 1


def test_on_kill_cancels_the_request_while_it_is_queued(fal_emulator):
    fal_emulator.configure(concurrency=1)
    running = submit(fal_emulator, service_time=30.0)  # takes the account's only slot
    queued = submit(fal_emulator, service_time=30.0)
    asyncio.run(FalRequestTrigger(queued.to_dict()).on_kill())
    records = {r["request_id"]: r for r in fal_emulator.requests()}
    assert records[queued.request_id]["cancelled"] and not records[queued.request_id]["billed"]
    assert not records[running.request_id]["cancelled"]
    assert fal_emulator.counters()["cancels"]["total"] == 1


def test_on_kill_leaves_a_running_request_to_finish(fal_emulator):
    """fal bills a request once it started, cancelled or not: cancelling it would only lose a paid result that a
    clear of the task can still fetch."""
    reference = submit(fal_emulator, service_time=30.0)
    asyncio.run(FalRequestTrigger(reference.to_dict()).on_kill())
    [record] = fal_emulator.requests()
    assert record["state"] == "IN_PROGRESS" and record["billed"] and not record["cancelled"]
    assert fal_emulator.counters()["cancels"]["total"] == 0


def test_a_trigger_that_does_not_own_its_request_never_cancels_it(fal_emulator):
    reference = submit(fal_emulator, service_time=30.0)
    trigger = FalRequestTrigger(
        reference.to_dict(), deadline=time.time() + 1.0, poll_interval=0.2, cancel_on_stop=False
    )
    event = asyncio.run(first_event(trigger))
    assert event.payload["status"] == "timeout"
    assert event.payload["cancel"].startswith("not cancelled")
    asyncio.run(trigger.on_kill())
    assert fal_emulator.counters()["cancels"]["total"] == 0
    assert fal_emulator.requests()[0]["cancelled"] is False


def test_a_poll_failing_after_fal_clients_retries_is_polled_again_not_fatal(fal_emulator, monkeypatch):
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "MAX_ATTEMPTS", 2)
    reference = submit(fal_emulator, service_time=0.5)
    fal_emulator.add_fault("nginx_502", target="status", first=3)  # poll 1 fails twice; poll 2 fails once, then works
    event = asyncio.run(first_event(FalRequestTrigger(reference.to_dict(), poll_interval=0.2)))
    assert event.payload["status"] == "completed" and event.payload["error"] is None
    assert fal_emulator.counters()["faults"]["by_kind"] == {"nginx_502": 3}


def test_a_status_outage_ends_the_wait_after_five_failed_polls(fal_emulator, monkeypatch):
    import fal_client.client

    monkeypatch.setattr(fal_client.client, "MAX_ATTEMPTS", 1)
    reference = submit(fal_emulator, service_time=30.0)
    fal_emulator.add_fault("nginx_502", target="status", rate=1.0)
    event = asyncio.run(first_event(FalRequestTrigger(reference.to_dict(), poll_interval=0.2, max_poll_interval=0.2)))
    assert event.payload["status"] == "error" and event.payload["retryable"] is True
    assert event.payload["error_class"] == "FalTransientError"
    assert fal_emulator.counters()["status_calls"] == 5  # one call per poll: nothing multiplies fal-client's attempts
    assert fal_emulator.counters()["cancels"]["total"] == 0  # the task's retry reattaches to the same request


def test_polling_backs_off_instead_of_fal_clients_tenth_of_a_second(fal_emulator):
    reference = submit(fal_emulator, service_time=6.0)
    event = asyncio.run(first_event(FalRequestTrigger(reference.to_dict(), poll_interval=0.5, max_poll_interval=2)))
    assert event.payload["status"] == "completed"
    status_calls = fal_emulator.counters()["status_calls"]
    assert status_calls <= 10, status_calls  # fal-client's 0.1 s loop would have made about 60
