"""A run's batch planned before anything is paid: the listing (or this shard of it) as entries, every image
validated from its header and every image's fields validated; repeated rows share one request."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.batch.state import BatchState
from airflow_provider_sam3.exceptions import InputValidationError

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.inputs import InputLimits
    from airflow_provider_sam3.batch.listing import BatchImage
    from airflow_provider_sam3.batch.options import BatchOptions
    from airflow_provider_sam3.endpoints import Endpoint

__all__ = ["INVALID_SHOWN", "check_cost", "plan_batch", "requeue_failures", "shard_of"]

INVALID_SHOWN = 5


def shard_of(source: str, shard_count: int) -> int:
    """The shard an image belongs to: a hash of its source, so every shard task finds the same split in its own
    listing, and a repeated image stays in one shard."""
    return int(hashlib.sha256(source.encode("utf-8")).hexdigest()[:12], 16) % shard_count


_ToInspect = tuple[int, str, "BatchImage"]
"""(position in the batch, ``images[i]`` for messages, the image)."""


def plan_batch(
    endpoint: Endpoint,
    images: list[BatchImage],
    *,
    shared: dict[str, Any],
    limits: InputLimits,
    timeout: float,
    skip_invalid: bool,
    shard: tuple[int, int] | None,
    log: Any,
) -> BatchState:
    """The run's batch: one entry per input row (of shard ``(index, count)`` when given). Raises
    ``InputValidationError`` naming up to ``INVALID_SHOWN`` unusable images, unless ``skip_invalid`` records them
    as ``invalid`` entries."""
    if shard is not None:
        index, count = shard
        listed = len(images)
        images = [image for image in images if shard_of(image.source, count) == index]
        log.info("Shard %d of %d: %d of the %d images listed", index, count, len(images), listed)
    now = time.time()
    state = BatchState(endpoint_id=endpoint.endpoint_id, started_at=now, deadline=now + timeout)
    to_inspect = _add_entries(state, endpoint, images, log)
    problems, shared_faults = _inspect_entries(state, endpoint, to_inspect, shared, limits)
    if to_inspect and len(shared_faults) == len(to_inspect):
        first = shared_faults[0]
        raise InputValidationError(
            f"arguments.{first.field}",
            f"every image was refused for this field of the batch's shared arguments, so nothing was submitted "
            f"({first}). Fix arguments: skip_invalid=True would only record every image as invalid",
        )
    if problems:
        _report_invalid(problems, len(images), skip_invalid, log)
    return state


def _add_entries(state: BatchState, endpoint: Endpoint, images: list[BatchImage], log: Any) -> list[_ToInspect]:
    """One entry per image; an image repeating an earlier one with the same fields is a ``repeat`` of it (one
    request answers both rows). Returns the first occurrences, which are inspected."""
    from airflow_provider_sam3.models.batch import BatchEntry, item_key

    first_of: dict[str, int] = {}
    to_inspect: list[_ToInspect] = []
    for position, image in enumerate(images):
        entry = BatchEntry(
            index=position,
            source=image.source,
            arguments=image.arguments,
            conn_id=image.conn_id,
            confined=image.confined,
        )
        key = item_key(endpoint.endpoint_id, image.source, image.arguments)
        if key in first_of:
            entry.state, entry.repeat_of = "repeat", first_of[key]
            log.warning(
                "images[%d] (%s) repeats images[%d] with the same fields: one request answers both rows",
                position,
                image.source,
                first_of[key],
            )
        else:
            first_of[key] = position
            to_inspect.append((position, f"images[{position}]", image))
        state.add(entry)
    return to_inspect


def _inspect_entries(
    state: BatchState, endpoint: Endpoint, to_inspect: list[_ToInspect], shared: dict[str, Any], limits: InputLimits
) -> tuple[list[str], list[InputValidationError]]:
    """Each image's header and fields checked as fal would: the problems (one line each, the entry marked
    ``invalid``), and those caused by a field of the batch's shared ``arguments``."""
    from airflow_provider_sam3.batch.inputs import PLACEHOLDER_IMAGE_URL, check_image_fields, inspect_images

    problems: list[str] = []
    shared_faults: list[InputValidationError] = []
    inspected = inspect_images([(where, image) for _, where, image in to_inspect], limits)
    for (position, where, image), facts in zip(to_inspect, inspected):
        entry = state.entries[str(position)]
        try:
            if isinstance(facts, InputValidationError):
                raise facts
            entry.width, entry.height = facts.width, facts.height
            check_image_fields(endpoint, {**shared, **image.arguments, "image_url": PLACEHOLDER_IMAGE_URL}, facts)
        except InputValidationError as error:
            problems.append(f"{where} ({image.source}): {error}")
            entry.fail(str(error), type(error).__name__, state="invalid")
            if not isinstance(facts, InputValidationError) and _names_a_shared_field(error, shared, image):
                shared_faults.append(error)
    return problems, shared_faults


def _report_invalid(problems: list[str], images: int, skip_invalid: bool, log: Any) -> None:
    """Log the invalid images (``skip_invalid``: they are recorded and the batch goes on), else refuse the batch."""
    shown = "; ".join(problem.rstrip(".") for problem in problems[:INVALID_SHOWN])
    extra = len(problems) - INVALID_SHOWN
    if skip_invalid:
        more = f"; and {extra} more (the manifest lists them all)" if extra > 0 else ""
        log.warning(
            "%d of %d images cannot be sent and are recorded as invalid (skip_invalid=True): %s%s",
            len(problems),
            images,
            shown,
            more,
        )
        return
    more = f"; and {extra} more" if extra > 0 else ""
    raise InputValidationError(
        "images",
        f"{len(problems)} of {images} images cannot be sent, so nothing was submitted: "
        f"{shown}{more}. Fix them, or set skip_invalid=True to record them as invalid and go on",
    )


def check_cost(
    endpoint: Endpoint,
    state: BatchState,
    max_cost_usd: float | None,
    max_resubmits: int,
    log: Any,
    answered: Callable[[], int] | None = None,
) -> float | None:
    """Log the estimated cost of what is left to submit; refuse it above ``max_cost_usd`` (nothing sent). When it
    is above and the batch has a result cache, ``answered()`` counts the images the cache answers (each read and
    looked up once): only the others count against the ceiling."""
    to_pay = len(state.in_state("pending"))
    estimate = endpoint.estimate_cost(requests=to_pay)
    over = max_cost_usd is not None and estimate is not None and estimate > max_cost_usd
    hits = answered() if over and answered is not None else 0
    if hits:
        to_pay -= hits
        estimate = endpoint.estimate_cost(requests=to_pay)
    price = f"${estimate:.2f}" if estimate is not None else "an unpublished price"
    log.info(
        "Batch of %d images on %s: %d requests to submit%s, estimated cost %s (fal bills successful requests "
        "only; resubmissions after failures add at most %d requests)",
        len(state.entries),
        endpoint.endpoint_id,
        to_pay,
        f" ({hits} more answered by the result cache)" if hits else "",
        price,
        to_pay * max_resubmits,
    )
    if max_cost_usd is not None and estimate is not None and estimate > max_cost_usd:
        raise InputValidationError(
            "max_cost_usd",
            f"the batch's estimated cost {price} ({to_pay} requests at {endpoint.endpoint_id}'s price) is above "
            f"max_cost_usd=${max_cost_usd:.2f}, so nothing was submitted; raise max_cost_usd or split the batch",
        )
    return estimate


def _names_a_shared_field(error: InputValidationError, shared: dict[str, Any], image: BatchImage) -> bool:
    """Whether ``error`` is about a field the batch's shared ``arguments`` set (and this image does not override)."""
    top = error.field.split(".", 1)[0].split("[", 1)[0]
    return top in shared and top not in image.arguments


def requeue_failures(state: BatchState, options: BatchOptions, log: Any) -> None:
    """Failures that a new submission may fix go back in line: at most ``max_resubmits`` times per image per try
    on average (``max_resubmits`` x the try number in all). Final failures (rejected input, app errors) are never
    submitted again; after the batch's deadline nothing is, until a later try."""
    if time.time() >= state.deadline:
        return
    budget = options.max_resubmits * options.try_number
    for key, entry in state.entries.items():
        if entry.state == "failed" and entry.retryable and entry.retries < budget:
            log.warning(
                "images[%d] (%s) failed (%s); submitting it again (%d of %d)",
                entry.index,
                entry.source,
                entry.error,
                entry.retries + 1,
                budget,
            )
            entry.state = "pending"  # its retries count when it is sent: the deadline may come first
            state.touch(key)
