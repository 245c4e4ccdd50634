"""Checks every operator (single, batch, sensor) makes before anything is sent to fal, in one place.

- ``finite_number`` / ``whole_number``: numbers that refuse NaN, +-inf and booleans, naming the field;
- ``preflight_output_path``: an ``output_path`` resolved and, when local, proved writable before paying;
- ``check_prompt_geometry``: points and boxes checked against the image's size when it is known locally;
- ``check_pacing`` and ``as_seconds``: polling intervals and durations;
- ``check_submit_options``: fal's queue options of a submit (priority, start deadline, runner hint, webhook, media
  lifetime, request history), checked once and returned as the ``SubmitOptions`` the hook's submit takes (the
  operators call both through ``operators.queue_options.QueueOptionsOperator.checked_queue_options``).

Cheap to import: no Airflow, httpx, PIL or numpy at module level.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import InputValidationError
from airflow_provider_sam3.models.checked_numbers import finite_number, whole_number
from airflow_provider_sam3.models.geometry import check_prompt_geometry

if TYPE_CHECKING:
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = [
    "SuggestingPartial",
    "as_seconds",
    "check_pacing",
    "check_prompt_geometry",
    "check_submit_options",
    "finite_number",
    "ignored_fields_warning",
    "is_number",
    "preflight_output_path",
    "unknown_parameter_error",
    "whole_number",
]

PROBE_PREFIX = ".sam3-write-probe-"
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
"""fal keeps a result for an hour after it completes; a week bounds any sensible wait (and ``defer()``'s)."""
MEDIA_LIFETIMES = {"immediate": 60, "1h": 3600, "1d": 86400, "7d": 604800, "30d": 2592000, "1y": 31536000}
"""fal-client's names for media lifetimes (its upload ``expires_in``), in seconds; checked against fal-client's own
table by the contract test. ``"immediate"`` is 60 s: fal treats 0 as "never expires"."""
MAX_HINT_LENGTH = 256
MAX_WEBHOOK_URL_LENGTH = 2048


def preflight_output_path(field: str, output_path: Any) -> Any:
    """``output_path`` resolved (``resolve_output_path``); a local one is created if missing and proved writable
    (a probe file is written and deleted). Object stores are only resolved (no network check).

    Raises ``InputValidationError(field, ...)`` with a sentence saying what is wrong; returns the resolved path
    (``None`` stays ``None``).
    """
    from airflow_provider_sam3.storage.outputs import LOCAL_PROTOCOLS, OUTPUT_PATH_KINDS, resolve_output_path

    try:
        path = resolve_output_path(output_path)
    except InputValidationError as error:
        if error.field == field:
            raise
        raise InputValidationError(field, str(error).split(": ", 1)[-1]) from None
    except (ValueError, TypeError, ImportError) as error:
        raise InputValidationError(
            field, f"{output_path!r} cannot be used ({error})", allowed=OUTPUT_PATH_KINDS
        ) from None
    if path is None or getattr(path, "protocol", "") not in LOCAL_PROTOCOLS:
        return path
    target = os.path.abspath(path.path if hasattr(path, "path") else str(path))
    problem = _local_problem(target)
    if problem:
        raise InputValidationError(
            field,
            f"{problem}; nothing was sent to fal, so nothing was paid",
            allowed=f"{OUTPUT_PATH_KINDS}, that this worker can create and write",
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


def as_seconds(value: float | timedelta | None) -> float | None:
    """A duration in seconds; anything else (a string, a boolean, NaN, infinity) fails the DAG file with the
    parameter named: a NaN or infinite deadline would be paid for, then could never be waited for."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if is_number(value):
        return float(value)
    from airflow_provider_sam3.exceptions import InputValidationError

    what = "is not a finite duration" if is_number(value, finite=False) else "is not a duration"
    raise InputValidationError("timeout", f"{value!r} {what}", allowed="a number of seconds or a timedelta")


def is_number(value: Any, *, finite: bool = True) -> bool:
    """An int or float, not a boolean, and (``finite``) neither NaN nor infinite."""
    import math

    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return not finite or math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_pacing(poll_interval: Any, max_poll_interval: Any) -> None:
    """The polling intervals an operator was given, checked before anything is sent (the queue priority is one of
    ``check_submit_options``'s)."""
    from airflow_provider_sam3.exceptions import InputValidationError
    from airflow_provider_sam3.hooks.settings import MIN_POLL_INTERVAL

    for name, value in (("poll_interval", poll_interval), ("max_poll_interval", max_poll_interval)):
        if value is not None and not (is_number(value) and value >= MIN_POLL_INTERVAL):
            why = (
                "is a boolean, not a number"
                if isinstance(value, bool)
                else "is not a finite number"
                if is_number(value, finite=False) and not is_number(value)
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


def check_submit_options(
    *,
    priority: Any = None,
    start_timeout: Any = None,
    hint: Any = None,
    webhook_url: Any = None,
    media_expires_in: Any = None,
    store_io: Any = True,
) -> SubmitOptions:
    """fal's queue options for a submit, checked before anything is sent; the ``SubmitOptions`` to pass to
    ``FalHook.submit(..., options=...)`` / ``asubmit``. Every refusal is an ``InputValidationError`` naming the
    parameter and what it takes.

    - ``priority``: ``None``, ``"normal"`` or ``"low"``. ``"low"`` needs ``start_timeout``: fal serves low-priority
      requests after every normal request of every fal user, so without a deadline to start one may wait for hours.
    - ``start_timeout``: seconds (above 1, at most a week) fal may keep the request before it starts; then fal
      fails it (a 504 the task reports) and does not bill it.
    - ``hint``: a runner hint, printable ASCII without spaces at the ends, at most 256 characters (a header value).
    - ``webhook_url``: an http(s) URL with a host, at most 2048 characters.
    - ``media_expires_in``: how long fal keeps the output media: seconds (a whole number, at least 60), a
      ``timedelta``, or one of fal-client's names ``immediate`` (60 s), ``1h``, ``1d``, ``7d``, ``30d``, ``1y``.
      ``None`` keeps fal's default retention.
    - ``store_io``: ``True`` (fal's default) or ``False`` (fal keeps no copy of inputs and outputs in its request
      history).
    """
    from airflow_provider_sam3.models.submit_options import SubmitOptions

    if priority not in (None, "normal", "low"):
        raise InputValidationError("priority", f"{priority!r} is not a queue priority", allowed="normal, low")
    if start_timeout is not None and not (is_number(start_timeout) and 1 < start_timeout <= MAX_TIMEOUT_SECONDS):
        raise InputValidationError(
            "start_timeout",
            f"{start_timeout!r} is not a start deadline",
            allowed="a number of seconds above 1 (fal-client refuses 1 or less) and at most a week, or None",
        )
    if priority == "low" and start_timeout is None:
        raise InputValidationError(
            "priority",
            "'low' without start_timeout: fal starts low-priority requests only after every normal request of every "
            "fal user, so it could wait in the queue for hours while the task holds its deadline",
            allowed="normal; or low together with start_timeout (seconds fal may keep it queued before failing it)",
        )
    return SubmitOptions(
        priority=priority,
        start_timeout=start_timeout,
        hint=_header_text("hint", hint),
        webhook_url=_webhook_url(webhook_url),
        media_expires_in=_media_lifetime(media_expires_in),
        store_io=_flag("store_io", store_io),
    )


def _header_text(field: str, value: Any) -> str | None:
    if value is None:
        return None
    ok = isinstance(value, str) and 0 < len(value) <= MAX_HINT_LENGTH and value.isascii() and value.isprintable()
    if not ok or value != value.strip():
        shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
        raise InputValidationError(
            field,
            f"{shown} cannot be sent as a header value",
            allowed=f"printable ASCII text of 1 to {MAX_HINT_LENGTH} characters, without spaces at either end, or None",
        )
    return value


def _webhook_url(value: Any) -> str | None:
    if value is None:
        return None
    from urllib.parse import urlsplit

    text = value if isinstance(value, str) else ""
    usable = text.isprintable() and " " not in text and len(text) <= MAX_WEBHOOK_URL_LENGTH
    parts = urlsplit(text) if usable else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputValidationError(
            "webhook_url",
            f"{value!r} is not a URL fal can call",
            allowed=f"an http(s) URL with a host, at most {MAX_WEBHOOK_URL_LENGTH} characters, or None",
        )
    return text


def _media_lifetime(value: Any) -> int | None:
    allowed = (
        "a whole number of seconds of at least 60, a timedelta, or one of "
        + ", ".join(MEDIA_LIFETIMES)
        + "; or None for fal's default retention"
    )
    if value is None:
        return None
    if isinstance(value, str) and value.strip() == "never":
        raise InputValidationError(
            "media_expires_in", "'never' is fal's default retention, not a lifetime: leave it None", allowed=allowed
        )
    if isinstance(value, str) and value.strip() in MEDIA_LIFETIMES:
        return MEDIA_LIFETIMES[value.strip()]
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str) and not value.strip().lstrip("-").replace(".", "", 1).isdigit():
        raise InputValidationError("media_expires_in", f"{value!r} is not a media lifetime", allowed=allowed)
    return whole_number("media_expires_in", value, minimum=MEDIA_LIFETIMES["immediate"])


def _flag(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InputValidationError(field, f"{value!r} is not True or False", allowed="True or False")
    return value


def unknown_parameter_error(operator: type, task_id: Any, given: Mapping[str, Any]) -> Exception | None:
    """The error for keyword arguments ``operator`` does not take, suggesting the closest name each; ``None`` when
    every name in ``given`` is taken. Runs only after Airflow refused the arguments, so parsing a correct DAG file
    costs nothing more."""
    import difflib
    import inspect

    from airflow_provider_sam3.exceptions import UnknownParameterError

    known: set[str] = set(getattr(operator, "input_fields", ()))
    for cls in operator.__mro__:
        init = cls.__dict__.get("__init__")
        if init is not None:
            known.update(
                name
                for name, parameter in inspect.signature(init).parameters.items()
                if parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL) and name != "self"
            )
    unknown = [name for name in given if name not in known and not name.startswith("_airflow")]
    if not unknown:
        return None
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    fields = getattr(operator, "input_fields", ())
    takes = f"the endpoint's fields ({', '.join(fields)}) and " if fields else ""
    return UnknownParameterError(
        unknown[0],
        f"{operator.__name__} (task_id: {task_id}) does not take {', '.join(parts)}",
        allowed=f"{takes}the operator's own parameters (see help({operator.__name__}))",
    )


def ignored_fields_warning(given: Mapping[str, Any], body: Mapping[str, Any]) -> str | None:
    """A sentence about a field the user gave (``given``) that fal will ignore in the validated request ``body``,
    or ``None``: fal returns one mask unless ``return_multiple_masks`` is true, whatever ``max_masks`` says."""
    if given.get("max_masks") is not None and "max_masks" in body and not body.get("return_multiple_masks"):
        return (
            f"max_masks={body['max_masks']} has no effect without return_multiple_masks=True: fal returns one mask; "
            "set return_multiple_masks=True to get up to max_masks masks"
        )
    return None


class SuggestingPartial:
    """Airflow's ``Operator.partial()``, reporting a misspelt keyword with the closest parameter (as ``__init__``
    does); on a task (not a class) it stays Airflow's guard."""

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        from airflow.sdk import BaseOperator

        airflows = BaseOperator.__dict__["partial"].__get__(obj, cls)
        if obj is not None or cls is None:
            return airflows

        def partial(**kwargs: Any) -> Any:
            try:
                return airflows(**kwargs)
            except TypeError as error:
                better = unknown_parameter_error(cls, kwargs.get("task_id"), kwargs)
                if better is None:
                    raise
                raise better from error

        return partial
