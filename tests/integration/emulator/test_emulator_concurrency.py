"""The account concurrency limit: extra requests wait IN_QUEUE with a true, decreasing position."""

from __future__ import annotations

import asyncio
import math
import time

import fal_client
from emulator_helpers import IMAGE_ENDPOINT, png_data_uri, squares_image

ARGS = {"image_url": png_data_uri(squares_image(32, 24, [(8, 6, 24, 18)])), "prompt": "box"}
TOTAL, LIMIT, SERVICE = 50, 4, 0.2


def test_fifty_requests_through_four_slots(fal_emulator):
    fal_emulator.configure(concurrency=LIMIT, service_time_s=SERVICE, in_progress_logs=1)

    async def scenario() -> tuple[float, list]:
        client = fal_client.AsyncClient()
        started = time.monotonic()
        # 48 at once, then the watched request (44 ahead of it in the queue), then the last one.
        handles = list(await asyncio.gather(*(client.submit(IMAGE_ENDPOINT, arguments=ARGS) for _ in range(TOTAL - 2))))
        watched = await client.submit(IMAGE_ENDPOINT, arguments=ARGS)
        handles += [watched, await client.submit(IMAGE_ENDPOINT, arguments=ARGS)]

        async def watch() -> list:
            return [event async for event in watched.iter_events(interval=0.05)]

        # The others poll gently, so 49 pollers at fal-client's 0.1 s do not slow the emulator they share a process with.
        events, *results = await asyncio.gather(watch(), *(h.get(interval=0.5) for h in handles))
        assert all(r["masks"] for r in results)
        return time.monotonic() - started, events

    elapsed, events = asyncio.run(scenario())
    # 50 requests of 0.2 s through 4 slots: 13 rounds (the last has 2), 2.6 s. Faster means the limit leaks.
    ideal = math.ceil(TOTAL / LIMIT) * SERVICE
    assert elapsed >= ideal - 0.05, elapsed
    # About that long at the queue: from the first start to the last completion (client-side time adds the TLS
    # handshakes of 50 submits and the pollers' intervals, which depend on the machine).
    records = fal_emulator.requests()
    makespan = max(r["completed_at"] for r in records) - min(r["started_at"] for r in records)
    assert ideal - 0.05 <= makespan <= ideal * 1.3, (makespan, elapsed)
    counters = fal_emulator.counters()
    assert counters["max_in_progress"] == LIMIT
    assert counters["completed"] == TOTAL and counters["submissions"]["total"] == TOTAL

    positions = [e.position for e in events if isinstance(e, fal_client.Queued)]
    # 44 were queued ahead of it; the watcher's first look comes after some of them ran (how many: machine speed).
    assert positions[0] >= 20 and positions[-1] == 0
    assert positions == sorted(positions, reverse=True)
    assert len(set(positions)) >= 5  # a countdown, not a jump; how many steps a poller sees depends on its timing
    first_running = next(i for i, e in enumerate(events) if isinstance(e, fal_client.InProgress))
    assert all(isinstance(e, fal_client.Queued) for e in events[:first_running])
    assert isinstance(events[-1], fal_client.Completed)
