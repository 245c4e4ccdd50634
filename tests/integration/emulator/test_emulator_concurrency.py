"""The account concurrency limit: extra requests wait IN_QUEUE with a true, decreasing position."""

from __future__ import annotations

import asyncio

import fal_client
from emulator_helpers import IMAGE_ENDPOINT, png_data_uri, squares_image

ARGS = {"image_url": png_data_uri(squares_image(32, 24, [(8, 6, 24, 18)])), "prompt": "box"}
TOTAL, LIMIT, SERVICE = 50, 4, 0.2


def test_fifty_requests_through_four_slots(fal_emulator):
    fal_emulator.configure(concurrency=LIMIT, service_time_s=SERVICE, in_progress_logs=1)

    async def scenario() -> list:
        client = fal_client.AsyncClient()
        # 48 at once, then the watched request (44 ahead of it in the queue), then the last one.
        handles = list(await asyncio.gather(*(client.submit(IMAGE_ENDPOINT, arguments=ARGS) for _ in range(TOTAL - 2))))
        watched = await client.submit(IMAGE_ENDPOINT, arguments=ARGS)
        handles += [watched, await client.submit(IMAGE_ENDPOINT, arguments=ARGS)]

        async def watch() -> list:
            return [event async for event in watched.iter_events(interval=0.05)]

        # The others poll gently: 49 pollers at fal-client's 0.1 s would slow the emulator they share a process with.
        events, *results = await asyncio.gather(watch(), *(h.get(interval=0.5) for h in handles))
        assert all(r["masks"] for r in results)
        return events

    events = asyncio.run(scenario())
    # The order of events at the queue, not durations: never more than LIMIT running at once, requests start in
    # the order they were submitted, and each one starts only once a slot is free (the one LIMIT starts earlier
    # has completed), so 50 requests through 4 slots run in ceil(50 / 4) = 13 rounds at least.
    records = sorted(fal_emulator.requests(), key=lambda r: r["started_at"])
    assert [r["submitted_at"] for r in records] == sorted(r["submitted_at"] for r in records)
    for earlier, later in zip(records, records[LIMIT:]):
        assert later["started_at"] >= earlier["completed_at"], (earlier, later)
    moments = sorted([(r["started_at"], 1) for r in records] + [(r["completed_at"], -1) for r in records])
    running, most = 0, 0
    for _, step in moments:
        running += step
        most = max(most, running)
    assert most == LIMIT
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
