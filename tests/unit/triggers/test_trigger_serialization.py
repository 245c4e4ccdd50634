"""The trigger's kwargs are JSON primitives that rebuild the same trigger, as the triggerer does after a restart."""

from __future__ import annotations

import importlib
import json

from airflow_provider_sam3.models.status import QueueStatus
from airflow_provider_sam3.triggers.fal import MAX_LOG_LINES_PER_POLL, FalRequestTrigger, forward_new_logs

REFERENCE = {
    "endpoint_id": "fal-ai/sam-3/image",
    "request_id": "7b0c",
    "status_url": "https://q/fal-ai/sam-3/requests/7b0c/status",
    "response_url": "https://q/fal-ai/sam-3/requests/7b0c",
    "cancel_url": "https://q/fal-ai/sam-3/requests/7b0c/cancel",
    "submitted_at": 1700000000.0,
}


def test_serialize_round_trips_through_json_into_the_same_trigger():
    trigger = FalRequestTrigger(
        REFERENCE,
        "fal_other",
        deadline=1700003600.0,
        poll_interval=1.5,
        max_poll_interval=20,
        forward_logs=False,
        echo={"image": {"width": 4, "height": 3}},
        cancel_on_stop=False,
    )
    classpath, kwargs = trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))  # primitives only, or this raises
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["deadline"] == 1700003600.0  # absolute: survives a triggerer restart unchanged
    assert rebuilt.cancel_on_stop is False


def test_kwargs_never_hold_the_key(monkeypatch):
    monkeypatch.setenv("FAL_KEY", "sentinel-key-xyz")
    _, kwargs = FalRequestTrigger(REFERENCE).serialize()
    assert "sentinel-key-xyz" not in json.dumps(kwargs)


class Recorder:
    def __init__(self):
        self.lines = []

    def info(self, fmt, *args):
        self.lines.append(fmt % args)


def test_log_forwarding_is_bounded_and_only_new_lines():
    log = Recorder()
    entries = [{"message": f"line {i}", "level": "INFO"} for i in range(3)]
    seen = forward_new_logs(log, QueueStatus(state="IN_PROGRESS", logs=entries), 0, "r1")
    assert seen == 3 and len(log.lines) == 3
    entries += [{"message": "x" * 5000, "level": "INFO"}] + [{"message": f"more {i}"} for i in range(100)]
    log.lines.clear()
    seen = forward_new_logs(log, QueueStatus(state="IN_PROGRESS", logs=entries), seen, "r1")
    assert seen == len(entries)
    assert len(log.lines) == MAX_LOG_LINES_PER_POLL + 1  # the cap, plus one line saying how many were skipped
    assert max(len(line) for line in log.lines) < 400  # a 5,000-char message is cut short
    assert "81 more log lines" in log.lines[-1]
