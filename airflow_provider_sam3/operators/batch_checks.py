"""The batch operator's options, checked before anything is listed or sent, and the task's own output folder."""

from __future__ import annotations

import math
import os
from typing import Any

from airflow_provider_sam3.batch.options import MAX_TRIGGER_REQUESTS
from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.operators.preflight import finite_number

__all__ = ["FAILURE_POLICIES", "check_batch_options", "check_shard", "task_folder"]

FAILURE_POLICIES = ("fail", "report")


def _whole(name: str, value: Any, *, optional: bool = False, minimum: int = 1) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputValidationError(name, f"{value!r} must be an integer of at least {minimum}")


def check_batch_options(op: Any) -> None:
    """Every option of a ``Sam3BatchOperator``, naming the one that is wrong and what is allowed."""
    _whole("max_in_flight", op.max_in_flight)
    if op.deferrable and op.max_in_flight > MAX_TRIGGER_REQUESTS:
        raise InputValidationError(
            "max_in_flight",
            f"{op.max_in_flight} is more than a deferrable batch can wait for: its trigger holds every waiting "
            "request id in its kwargs (a 64 KB column on MySQL), and a clear must cancel them all within "
            "Airflow's 30 s",
            allowed=f"1 to {MAX_TRIGGER_REQUESTS}",
        )
    _whole("upload_above_bytes", op.upload_above_bytes, optional=True, minimum=0)
    _whole("max_input_bytes", op.max_input_bytes)
    check_shard(op.shard_index, op.shard_count)
    _whole("submit_concurrency", op.submit_concurrency)
    _whole("max_resubmits", op.max_resubmits, minimum=0)
    _whole("collect_every", op.collect_every, optional=True, minimum=0)
    if op.on_image_failure not in FAILURE_POLICIES:
        raise InputValidationError(
            "on_image_failure", f"{op.on_image_failure!r} is not a policy", allowed=", ".join(FAILURE_POLICIES)
        )
    op.checked_queue_options()  # polling, priority, start_timeout, hint, webhook_url, media_expires_in, store_io
    op.check_cache_options()
    if op.batch_timeout is None or not math.isfinite(op.batch_timeout) or op.batch_timeout <= 0:
        raise InputValidationError("timeout", f"{op.batch_timeout!r} must be a finite positive duration")
    op.max_cost_usd = finite_number("max_cost_usd", op.max_cost_usd, minimum=0, allow_none=True)
    if not isinstance(op.arguments, dict):
        raise InputValidationError("arguments", f"must be a mapping of field names to values, not {op.arguments!r}")
    for name in ("image", "image_url"):
        if name in op.arguments:
            raise InputValidationError(f"arguments.{name}", "images are given through the images parameter")


def check_shard(index: Any, count: Any) -> None:
    """``shard_index`` from 0 to ``shard_count - 1``, both given or neither."""
    if index is None and count is None:
        return
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputValidationError(
            "shard_count", f"{count!r} must be a positive integer when shard_index is given", allowed=">= 1"
        )
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        raise InputValidationError(
            "shard_index", f"{index!r} must be an integer from 0 to shard_count - 1", allowed=f"0 to {count - 1}"
        )


def task_folder(op: Any, output_path: Any, context: Any) -> Any:
    """``<output_path>/<dag_id>/<run_id>/<task_id>[/<map_index>]`` for this task instance, created and checked
    writable (local storage) before anything is paid."""
    from airflow_provider_sam3.batch.manifest import batch_folder
    from airflow_provider_sam3.storage.outputs import resolve_output_path

    if output_path is None or output_path == "":
        raise InputValidationError(
            "output_path",
            "is required for a batch: every image's outputs and the manifest are written there "
            "(e.g. '/data/sam3/{{ ds }}' or 's3://conn_id@bucket/sam3/{{ ds }}')",
        )
    ti = context.get("ti")  # absent only when execute() is called by hand, outside a task run
    folder = batch_folder(
        resolve_output_path(output_path),
        getattr(ti, "dag_id", op.dag_id),
        getattr(ti, "run_id", "no_run"),
        getattr(ti, "task_id", op.task_id),
        getattr(ti, "map_index", -1),
    )
    if getattr(folder, "protocol", "") in ("", "file", "local"):
        probe = folder / f".write-check-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise InputValidationError(
                "output_path",
                f"{output_path!r} cannot hold this task's outputs: creating or writing {folder} failed "
                f"({type(error).__name__}: {error.strerror or error}); give a writable folder",
            ) from None
    return folder
