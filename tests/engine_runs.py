"""For tests that run the batch engine without Airflow: a plain state store, and a batch planned from files."""

from __future__ import annotations

import asyncio
import json
import logging

LOG = logging.getLogger("engine-test")


class LogLines(logging.Handler):
    """Collects the messages logged to ``LOG`` while in use (``with LogLines() as lines:``), whatever else Airflow's
    logging set up does with them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> list[str]:
        LOG.addHandler(self)
        LOG.setLevel(logging.DEBUG)
        return self.messages

    def __exit__(self, *exc: object) -> None:
        LOG.removeHandler(self)


SHARED = {"prompt": "box", "include_scores": True, "include_boxes": True, "sync_mode": True}
"""The batch operator's shared fields for SAM 3 image: what an engine test submits with every image."""


class PlainStore:
    """What the engine needs of Airflow's task state store: JSON values by key, with a count of writes."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.writes = 0

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        self.values[key] = json.loads(json.dumps(value))
        self.writes += 1

    def delete(self, key):
        self.values.pop(key, None)

    @classmethod
    def copy_of(cls, store: PlainStore) -> PlainStore:
        """A separate store holding the same values (to look at a store without changing it)."""
        copy = cls()
        copy.values = json.loads(json.dumps(store.values))
        return copy


def planned(paths):
    """SAM 3 image's endpoint and a batch planned from these files with ``SHARED``, as the operator plans one."""
    from airflow_provider_sam3.batch.inputs import InputLimits
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.batch.planning import plan_batch
    from airflow_provider_sam3.endpoints import endpoint_for

    endpoint = endpoint_for("image", "3")
    state = plan_batch(
        endpoint,
        [BatchImage(str(p)) for p in paths],
        shared=SHARED,
        limits=InputLimits(),
        timeout=300,
        skip_invalid=False,
        shard=None,
        log=LOG,
    )
    return endpoint, state


def run_engine(engine):
    """One stay of an engine built with ``hook=None``, on a ``FalHook`` of its own (closed afterwards, as the
    operator does); returns what the stay returns."""
    from airflow_provider_sam3.hooks.fal import FalHook

    async def run():
        engine.hook = FalHook()
        try:
            return await engine.run(None)
        finally:
            await engine.hook.aclose()

    return asyncio.run(run())
