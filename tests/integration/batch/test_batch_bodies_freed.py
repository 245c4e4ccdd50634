"""A batch's request and response bodies do not pile up as its images go by. httpx leaves every request and
response in a reference cycle, so a submit's data URI and a result with its outputs inline stay allocated until a
cycle-collector pass: the engine runs one after a bounded number of bytes (``batch.memory``). Python's own passes
are turned off here, so only the engine's can free anything."""

from __future__ import annotations

import gc

import httpx
from engine_runs import LOG, SHARED, PlainStore, planned, run_engine

from airflow_provider_sam3.batch.engine import BatchEngine
from airflow_provider_sam3.batch.memory import CycleCollector, body_bytes_estimate
from airflow_provider_sam3.batch.options import BatchOptions
from airflow_provider_sam3.batch.results import FETCH_CONCURRENCY

SIDE = 560
LARGE = 256 * 1024


def noise_photos(folder, count):
    """PNGs of about 0.9 MB (noise does not compress), each with a bright square the emulator finds."""
    import numpy
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = numpy.random.default_rng(3)
    paths = []
    for number in range(count):
        pixels = rng.integers(0, 120, size=(SIDE, SIDE, 3), dtype=numpy.uint8)
        pixels[150:350, 150:350] = (240, 200, 60)
        path = folder / f"photo_{number:03d}.png"
        Image.fromarray(pixels).save(path, compress_level=1)
        paths.append(path)
    return paths


def large_bodies_alive() -> int:
    """httpx requests and responses alive (or garbage not yet collected) whose body is large."""
    count = 0
    for thing in gc.get_objects():
        if type(thing) in (httpx.Request, httpx.Response):  # type(), not isinstance: lazy proxies would load
            try:
                count += len(thing.content) >= LARGE
            except httpx.StreamError:  # a body not read into memory
                pass
    return count


class WatchedEngine(BatchEngine):
    """Counts the large bodies alive each time an image's call is over, before the engine may collect."""

    most_alive = 0

    def _bodies_done(self, entry):
        self.most_alive = max(self.most_alive, large_bodies_alive())
        super()._bodies_done(entry)


def test_bodies_are_freed_as_the_batch_goes_not_at_its_end(tmp_path, fal_emulator, no_automatic_collection):
    fal_emulator.configure(concurrency=4, service_time_s=0.0)
    count = 24
    paths = noise_photos(tmp_path / "in", count)
    endpoint, state = planned(paths)
    options = BatchOptions(max_in_flight=count, submit_concurrency=3, poll_interval=0.1, shared_arguments=SHARED)
    collect_after = 4 * body_bytes_estimate(SIDE, SIDE)  # a pass after every 4 calls

    engine = WatchedEngine(None, endpoint, state, tmp_path / "out", PlainStore(), options, LOG)
    engine.cycles = CycleCollector(collect_after_bytes=collect_after)
    run_engine(engine)
    assert state.counts()["done"] == count
    # Each image makes two large bodies (its submit's request, its result's response). Left to Python, all 48
    # would still be alive at the end; the engine's passes leave at most the calls since the last pass plus those
    # in flight.
    assert engine.cycles.passes >= (2 * count) // 4 - 1
    assert engine.most_alive <= 4 + options.submit_concurrency + FETCH_CONCURRENCY
    assert large_bodies_alive() <= 4
