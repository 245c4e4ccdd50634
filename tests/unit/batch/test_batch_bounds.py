"""What keeps a batch bounded whatever its size: the trigger's kwargs, max_in_flight, the state store."""

from __future__ import annotations

import json
import uuid

import pytest

from airflow_provider_sam3.batch.options import DEFAULT_MAX_IN_FLIGHT, MAX_TRIGGER_REQUESTS
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.triggers.batch import FalBatchTrigger, kwargs_size


def test_the_largest_trigger_fits_in_32_kb():
    ids = [str(uuid.uuid4()) for _ in range(MAX_TRIGGER_REQUESTS)]
    templates = {name: f"https://queue.fal.run/fal-ai/sam-3/requests/{{request_id}}/{name}" for name in ("s", "r", "c")}
    trigger = FalBatchTrigger(
        "fal-ai/sam-3/image", templates, ids, deadline=1e10, fire_at=300, progress={"total": 100_000, "done": 0}
    )
    assert len(json.dumps(trigger.serialize()[1])) == pytest.approx(kwargs_size(trigger), rel=0.1)
    assert kwargs_size(trigger) <= 32 * 1024
    assert DEFAULT_MAX_IN_FLIGHT < MAX_TRIGGER_REQUESTS


def test_a_deferrable_batch_refuses_more_in_flight_than_its_trigger_holds(tmp_path):
    operator = Sam3BatchOperator(
        task_id="t",
        images=str(tmp_path),
        output_path=str(tmp_path),
        deferrable=True,
        max_in_flight=MAX_TRIGGER_REQUESTS + 1,
    )
    with pytest.raises(InputValidationError) as raised:
        operator._check_options()
    assert "max_in_flight" in str(raised.value) and f"1 to {MAX_TRIGGER_REQUESTS}" in str(raised.value)
    operator.deferrable = False  # on the worker nothing holds the ids but the state store
    operator._check_options()


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("shard_index", 4, "0 to 3"),
        ("shard_index", -1, "0 to 3"),
        ("shard_count", 0, ">= 1"),
        ("shard_index", True, "0 to 3"),
    ],
)
def test_shard_options_are_checked(tmp_path, field, value, allowed):
    options = {"shard_index": 0, "shard_count": 4, field: value}
    operator = Sam3BatchOperator(task_id="t", images=str(tmp_path), output_path=str(tmp_path), **options)
    with pytest.raises(InputValidationError) as raised:
        operator._check_options()
    assert field in str(raised.value) and allowed in str(raised.value)


def test_the_mmap_threshold_is_fixed_for_large_buffers():
    """Image bodies of several MB are served by mmap and returned on free (see batch/memory.py)."""
    import sys

    from airflow_provider_sam3.batch.memory import keep_large_buffers_off_the_heap

    if not sys.platform.startswith("linux"):
        pytest.skip("glibc only")
    assert keep_large_buffers_off_the_heap() is True
    assert keep_large_buffers_off_the_heap() is True  # once per process, then a no-op
