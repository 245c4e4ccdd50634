"""Checks every operator (single, batch, sensor) makes before anything is sent to fal, in one place.

- ``finite_number`` / ``whole_number``: numbers that refuse NaN, +-inf and booleans, naming the field;
- ``preflight_output_path``: an ``output_path`` resolved and, when local, proved writable before paying;
- ``check_prompt_geometry``: points and boxes checked against the image's size when it is known locally;
- ``check_pacing`` and ``_seconds``: queue priority, polling intervals and durations (moved from ``queue.py``, which
  re-exports them).

Cheap to import: no Airflow, httpx, PIL or numpy at module level.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from typing import Any

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.numbers import finite_number, whole_number
from airflow_provider_sam3.models.geometry import check_prompt_geometry  # noqa: F401 - re-exported

__all__ = ["check_pacing", "check_prompt_geometry", "finite_number", "preflight_output_path", "whole_number"]

PROBE_PREFIX = ".sam3-write-probe-"


def preflight_output_path(field: str, output_path: Any) -> Any:
    """``output_path`` resolved (``resolve_output_path``); a local one is created if missing and proved writable
    (a probe file is written and deleted). Object stores are only resolved (no network check).

    Raises ``InputValidationError(field, ...)`` with a sentence saying what is wrong; returns the resolved path
    (``None`` stays ``None``).
    """
    from airflow_provider_sam3.storage.outputs import _PATH_KINDS, LOCAL_PROTOCOLS, resolve_output_path

    try:
        path = resolve_output_path(output_path)
    except InputValidationError as error:
        if error.field == field:
            raise
        raise InputValidationError(field, str(error).split(": ", 1)[-1]) from None
    except (ValueError, TypeError, ImportError) as error:
        raise InputValidationError(field, f"{output_path!r} cannot be used ({error})", allowed=_PATH_KINDS) from None
    if path is None or getattr(path, "protocol", "") not in LOCAL_PROTOCOLS:
        return path
    target = os.path.abspath(path.path if hasattr(path, "path") else str(path))
    problem = _local_problem(target)
    if problem:
        raise InputValidationError(
            field,
            f"{problem}; nothing was sent to fal, so nothing was paid",
            allowed=f"{_PATH_KINDS}, that this worker can create and write",
        )
    return path


def _local_problem(target: str) -> str | None:
    if os.path.exists(target) and not os.path.isdir(target):
        return f"{target!r} is a file, not a directory"
    ancestor = target
    while not os.path.exists(ancestor) and os.path.dirname(ancestor) != ancestor:
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        return f"{ancestor!r} is a file, so {target!r} cannot be created under it"
    try:
        os.makedirs(target, exist_ok=True)
    except FileExistsError:
        return f"{target!r} cannot be created: a file is in the way"
    except NotADirectoryError:
        return f"{target!r} cannot be created: a part of it is a file, not a directory"
    except PermissionError:
        return f"{target!r} cannot be created: this worker has no permission there"
    except OSError as error:
        return f"{target!r} cannot be created ({error.strerror or type(error).__name__})"
    probe = os.path.join(target, PROBE_PREFIX + uuid.uuid4().hex)
    try:
        with open(probe, "xb") as handle:
            handle.write(b"ok")
    except PermissionError:
        return f"{target!r} is not writable by this worker"
    except OSError as error:
        return f"{target!r} cannot be written ({error.strerror or type(error).__name__})"
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass
    return None


def _seconds(value: float | timedelta | None) -> float | None:
    """A duration in seconds; anything else (a string, a boolean, NaN, infinity) fails the DAG file with the
    parameter named: a NaN or infinite deadline would be paid for, then could never be waited for."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if _is_number(value):
        return float(value)
    from airflow_provider_sam3.exceptions import InputValidationError

    what = "is not a finite duration" if _is_number(value, finite=False) else "is not a duration"
    raise InputValidationError("timeout", f"{value!r} {what}", allowed="a number of seconds or a timedelta")


def _is_number(value: Any, *, finite: bool = True) -> bool:
    """An int or float, not a boolean, and (``finite``) neither NaN nor infinite."""
    import math

    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return not finite or math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_pacing(priority: Any, poll_interval: Any, max_poll_interval: Any) -> None:
    """The queue priority and polling intervals an operator was given, checked before anything is sent."""
    from airflow_provider_sam3.exceptions import InputValidationError
    from airflow_provider_sam3.hooks.settings import MIN_POLL_INTERVAL

    if priority not in (None, "normal", "low"):
        raise InputValidationError("priority", f"{priority!r} is not a queue priority", allowed="normal, low")
    for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval)):
        if value is not None and not (_is_number(value) and value >= MIN_POLL_INTERVAL):
            why = (
                "is a boolean, not a number"
                if isinstance(value, bool)
                else "is not a finite number"
                if _is_number(value, finite=False) and not _is_number(value)
                else "would poll fal too fast or is not a number"
            )
            raise InputValidationError(
                name, f"{value!r} {why}", allowed=f"a number of seconds of at least {MIN_POLL_INTERVAL}, or None"
            )
    if poll_interval is not None and max_poll_interval is not None and max_poll_interval < poll_interval:
        raise InputValidationError(
            "max_poll_interval",
            f"{max_poll_interval!r} is below poll_interval {poll_interval!r}",
            allowed=f"at least {poll_interval!r}",
        )
