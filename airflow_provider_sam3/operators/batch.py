"""Sam3BatchOperator: thousands of images through one SAM 3 image endpoint from one Airflow task.

The path of a batch: render -> on the run's first try, list the images and validate every one (nothing is sent
if one is unusable, unless ``skip_invalid``); later tries and clears of the run use that list from the task state
store -> estimate the cost, refuse above ``max_cost_usd`` -> submit (``submit_concurrency`` calls at a time, at
most ``max_in_flight`` waiting at fal), each request id durable as soon as its submit returns -> wait for all of
them in one ``FalBatchTrigger`` (or on the worker) -> fetch results, copy outputs to this task's folder under
``output_path``, write manifest parts -> fetch again what fal completed but could not be stored; resubmit only
requests fal failed in a retryable way or lost, a bounded number of times -> ``manifest.jsonl`` and a summary
document in XCom.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, conf

from airflow_provider_sam3.exceptions import FalRequestError, InputValidationError
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_sam3.operators.batch_state import BatchState
from airflow_provider_sam3.operators.checks import finite_number
from airflow_provider_sam3.operators.batch_work import BatchWork
from airflow_provider_sam3.operators.queue import _seconds, check_pacing

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.batch import BatchEntry
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.operators.batch_inputs import BatchImage

BATCH_KINDS = ("image", "image-rle", "embed")
FAILURE_POLICIES = ("fail", "report")
DEFAULT_BATCH_TIMEOUT = timedelta(hours=6)
DEFER_GRACE_SECONDS = 120
CANCEL_WAIT_SECONDS = 25
BATCH_SUMMARY_KIND = "sam3.batch"
SUMMARY_FAILURES_SHOWN = 20
INVALID_SHOWN = 5
BATCH_DEFAULTS = {"include_scores": True, "include_boxes": True, "sync_mode": True}
"""Asked for by default (same price): scores and boxes for the manifest, and outputs inline in the result
(``sync_mode``), so storing an image's outputs takes one call to fal instead of one per file, and no URL can
expire before it is copied. ``arguments`` may turn any of them off."""


class Sam3BatchOperator(BatchWork, BaseOperator):
    """Segment (or embed) many images with one SAM 3 image endpoint; every image ends in the manifest.

    :param images: the images (templated): a list of URLs, paths or ObjectStoragePaths, or of mappings
        ``{"image": ..., "prompt": ...}`` with per-image fields; a folder; a glob (``/data/*.jpg``,
        ``s3://conn@bucket/photos/*.png``); or an XCom holding one of these.
    :param kind: ``image`` (mask images), ``image-rle`` (RLE masks) or ``embed`` (embeddings).
    :param version: ``"3"`` or ``"3.1"``.
    :param arguments: fields shared by every image (templated), e.g. ``{"prompt": "shoe", "max_masks": 4}``;
        an image's own fields win. Segmentation batches ask for scores, boxes and inline outputs unless told
        otherwise (see ``BATCH_DEFAULTS``).
    :param output_path: where outputs and the manifest go (required, templated): an absolute path, a ``file://``
        or object-store URL, or an ObjectStoragePath. Each task writes only in its own folder,
        ``<output_path>/<dag_id>/<run_id>/<task_id>[/<map_index>]/`` (``manifest.jsonl``, and each image's
        outputs under ``<request_id>/``), so batches can share an output_path; the summary names the manifest.
    :param max_in_flight: most requests waiting at fal at once (default: all). Requests beyond your account's
        concurrency only queue at fal; a bound leaves room for other work on the same account and limits what a
        cancel has to stop.
    :param submit_concurrency: submit calls in flight at once.
    :param max_resubmits: how many times an image whose request failed in a retryable way is submitted again.
    :param on_image_failure: ``"fail"`` fails the task when any image failed (after writing the manifest; a
        retry submits only the failed images again); ``"report"`` succeeds and reports them.
    :param max_cost_usd: refuse to start a batch whose estimated cost is above this.
    :param skip_invalid: record unusable images as ``invalid`` in the manifest instead of refusing the batch.
    :param timeout: how long the whole batch may take; then what is still at fal is cancelled.
    :param collect_every: copy outputs whenever this many requests have finished, while fal works on the rest
        (default: about five times per batch, at least 100 at a time; 0: only once all have finished).
    :param poll_interval, max_poll_interval: the batch's status rounds (default: 1 s, backing off to 5 s).
    """

    template_fields: tuple[str, ...] = ("images", "arguments", "output_path", "version", "max_cost_usd")
    template_fields_renderers = {"arguments": "json", "images": "json"}
    ui_color = "#dfe9ff"

    def __init__(
        self,
        *,
        images: Any,
        output_path: Any,
        kind: str = "image",
        version: str = "3",
        arguments: dict[str, Any] | None = None,
        fal_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_in_flight: int | None = None,
        submit_concurrency: int = 8,
        max_resubmits: int = 2,
        on_image_failure: str = "fail",
        max_cost_usd: float | None = None,
        skip_invalid: bool = False,
        timeout: float | timedelta = DEFAULT_BATCH_TIMEOUT,
        collect_every: int | None = None,
        poll_interval: float | None = None,
        max_poll_interval: float | None = None,
        priority: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.images = images
        self.output_path = output_path
        self.kind = kind
        self.version = version
        self.arguments = arguments or {}
        self.fal_conn_id = fal_conn_id
        self.deferrable = deferrable
        self.max_in_flight = max_in_flight
        self.submit_concurrency = submit_concurrency
        self.max_resubmits = max_resubmits
        self.on_image_failure = on_image_failure
        self.max_cost_usd = max_cost_usd
        self.skip_invalid = skip_invalid
        self.batch_timeout = _seconds(timeout)
        self.collect_every = collect_every
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.priority = priority
        self._live_state: BatchState | None = None
        self._try_number = 1

    # ------------------------------------------------------------------ checks made before anything is sent

    def _endpoint(self) -> Endpoint:
        from airflow_provider_sam3.endpoints import endpoint_for

        if self.kind not in BATCH_KINDS:
            raise InputValidationError("kind", f"{self.kind!r} cannot be batched", allowed=", ".join(BATCH_KINDS))
        return endpoint_for(self.kind, str(self.version))

    def _check_options(self) -> None:
        def positive_int(name: str, value: Any, *, optional: bool = False, minimum: int = 1) -> None:
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputValidationError(name, f"{value!r} must be an integer of at least {minimum}")

        positive_int("max_in_flight", self.max_in_flight, optional=True)
        positive_int("submit_concurrency", self.submit_concurrency)
        positive_int("max_resubmits", self.max_resubmits, minimum=0)
        positive_int("collect_every", self.collect_every, optional=True, minimum=0)
        if self.on_image_failure not in FAILURE_POLICIES:
            raise InputValidationError(
                "on_image_failure", f"{self.on_image_failure!r} is not a policy", allowed=", ".join(FAILURE_POLICIES)
            )
        check_pacing(self.priority, self.poll_interval, self.max_poll_interval)
        if self.batch_timeout is None or not math.isfinite(self.batch_timeout) or self.batch_timeout <= 0:
            raise InputValidationError("timeout", f"{self.batch_timeout!r} must be a finite positive duration")
        self.max_cost_usd = finite_number("max_cost_usd", self.max_cost_usd, minimum=0, allow_none=True)
        if not isinstance(self.arguments, dict):
            raise InputValidationError(
                "arguments", f"must be a mapping of field names to values, not {self.arguments!r}"
            )
        for name in ("image", "image_url"):
            if name in self.arguments:
                raise InputValidationError(f"arguments.{name}", "images are given through the images parameter")

    def _folder(self, context: Any) -> Any:
        """This task's own folder under ``output_path`` (created and checked writable before anything is paid)."""
        from airflow_provider_sam3.operators.batch_results import batch_folder
        from airflow_provider_sam3.operators.outputs import resolve_output_path

        if self.output_path is None or self.output_path == "":
            raise InputValidationError(
                "output_path",
                "is required for a batch: every image's outputs and the manifest are written there "
                "(e.g. '/data/sam3/{{ ds }}' or 's3://conn_id@bucket/sam3/{{ ds }}')",
            )
        ti = context.get("ti")  # absent only when execute() is called by hand, outside a task run
        folder = batch_folder(
            resolve_output_path(self.output_path),
            getattr(ti, "dag_id", self.dag_id),
            getattr(ti, "run_id", "no_run"),
            getattr(ti, "task_id", self.task_id),
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
                    f"{self.output_path!r} cannot hold this batch's outputs: creating or writing "
                    f"{folder} failed ({type(error).__name__}: {error.strerror or error}); give a writable folder",
                ) from None
        return folder

    def _body(self, endpoint: Endpoint, image: BatchImage, where: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body for one image, and what is known of the image (size) for its result document."""
        from airflow_provider_sam3.media.inputs import prepare_image
        from airflow_provider_sam3.operators.checks import check_prompt_geometry

        prepared = prepare_image(image.opened(), field=where)
        defaults = BATCH_DEFAULTS if endpoint.kind != "embed" else {}
        arguments = {**defaults, **self.arguments, **image.arguments, "image_url": prepared.url}
        body = endpoint.validate_input(arguments).to_request()
        size = {"width": prepared.width, "height": prepared.height}
        check_prompt_geometry(body, size)  # a point or box outside the image would be paid for nothing
        return body, size

    def _new_state(self, endpoint: Endpoint, images: list[BatchImage]) -> tuple[BatchState, dict[str, dict]]:
        """The run's batch: one entry per input row, every image validated; a row repeating an earlier one (same
        image, same fields) shares its request. Returns the state and the bodies built while validating."""
        from airflow_provider_sam3.models.batch import BatchEntry, item_key

        assert self.batch_timeout is not None  # checked before anything runs
        now = time.time()
        state = BatchState(endpoint_id=endpoint.endpoint_id, started_at=now, deadline=now + self.batch_timeout)
        bodies: dict[str, dict[str, Any]] = {}
        first_of: dict[str, int] = {}
        problems: list[str] = []
        for position, image in enumerate(images):
            entry = BatchEntry(index=position, source=image.source, arguments=image.arguments, conn_id=image.conn_id)
            key = item_key(endpoint.endpoint_id, image.source, image.arguments)
            if key in first_of:
                entry.state, entry.repeat_of = "repeat", first_of[key]
                self.log.warning(
                    "images[%d] (%s) repeats images[%d] with the same fields: one request answers both rows",
                    position,
                    image.source,
                    first_of[key],
                )
            else:
                first_of[key] = position
                try:
                    body, size = self._body(endpoint, image, f"images[{position}]")
                    entry.width, entry.height = size["width"], size["height"]
                    bodies[str(position)] = body
                except InputValidationError as error:
                    problems.append(f"images[{position}] ({image.source}): {error}")
                    entry.fail(str(error), type(error).__name__, state="invalid")
            state.add(entry)
        if problems and not self.skip_invalid:
            shown = "; ".join(problem.rstrip(".") for problem in problems[:INVALID_SHOWN])
            more = f"; and {len(problems) - INVALID_SHOWN} more" if len(problems) > INVALID_SHOWN else ""
            raise InputValidationError(
                "images",
                f"{len(problems)} of {len(images)} images cannot be sent, so nothing was submitted: "
                f"{shown}{more}. Fix them, or set skip_invalid=True to record them as invalid and go on",
            )
        return state, bodies

    def _check_cost(self, endpoint: Endpoint, to_pay: int, total: int) -> float | None:
        estimate = endpoint.estimate_cost(requests=to_pay)
        price = f"${estimate:.2f}" if estimate is not None else "an unpublished price"
        self.log.info(
            "Batch of %d images on %s: %d requests to submit, estimated cost %s (fal bills successful requests "
            "only; resubmissions after failures add at most %d requests)",
            total,
            endpoint.endpoint_id,
            to_pay,
            price,
            to_pay * self.max_resubmits,
        )
        if self.max_cost_usd is not None and estimate is not None and estimate > self.max_cost_usd:
            raise InputValidationError(
                "max_cost_usd",
                f"the batch's estimated cost {price} ({to_pay} requests at {endpoint.endpoint_id}'s price) is above "
                f"max_cost_usd=${self.max_cost_usd:.2f}, so nothing was submitted; raise max_cost_usd or split "
                "the batch",
            )
        return estimate

    # ------------------------------------------------------------------ execute

    def execute(self, context: Any) -> Any:
        from airflow_provider_sam3.operators.batch_inputs import resolve_images
        from airflow_provider_sam3.operators.completion import as_task_error

        self._try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        store = context.get("task_state_store")
        try:
            endpoint = self._endpoint()
            self._check_options()
            folder = self._folder(context)
            state = self._resumed(store, endpoint)
            if state is not None and state.summary is not None:
                return self._finished_before(state, store)
            bodies: dict[str, dict[str, Any]] = {}
            if state is None:
                state, bodies = self._new_state(endpoint, resolve_images(self.images))
            assert self.batch_timeout is not None  # checked before anything runs
            state.deadline = time.time() + self.batch_timeout  # each try gets the whole timeout
            self._requeue(state)
            estimate = self._check_cost(endpoint, len(state.in_state("pending")), len(state.entries))
        except InputValidationError as error:
            raise as_task_error(error, retry_useless=True) from error
        if state.estimate_usd is None:
            state.estimate_usd = estimate
        state.save(store)
        return self._run(context, endpoint, state, folder, bodies, event=None)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the batch trigger fired: collect what finished, then submit more, wait again or finish."""
        from airflow_provider_sam3.endpoints import get_endpoint

        if not isinstance(event, dict) or event.get("status") not in ("finished", "progress", "timeout", "error"):
            raise FalRequestError(f"the batch trigger sent an event this provider does not understand: {event!r}")
        self._try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        store = context.get("task_state_store")
        state = BatchState.load(store)
        if state is None:
            raise FalRequestError(
                "the batch's entries are missing from the task state store; the task cannot tell "
                "which images were submitted. Clear the task to start the batch again"
            )
        return self._run(context, get_endpoint(state.endpoint_id), state, self._folder(context), {}, event=event)

    def on_kill(self) -> None:
        """The task was killed while on the worker: cancel what is still at fal (the trigger's on_kill covers a
        deferred batch)."""
        state = self._live_state
        if state is not None:
            self._cancel_entries(state, state.in_state("submitted"))

    # ------------------------------------------------------------------ never pay twice

    def _resumed(self, store: Any, endpoint: Endpoint) -> BatchState | None:
        """The batch a previous try (or a cleared run) of this task left: its image list is used as it is (the
        folder or glob is not listed again) and nothing it submitted is submitted again."""
        previous = BatchState.load(store)
        if previous is None:
            return None
        if previous.endpoint_id != endpoint.endpoint_id:
            self.log.warning(
                "A previous try ran this batch on %s; cancelling its requests and starting on %s",
                previous.endpoint_id,
                endpoint.endpoint_id,
            )
            self._cancel_entries(previous, previous.in_state("submitted"))
            previous.forget(store)
            return None
        counts = previous.counts()
        self.log.info(
            "Resuming this run's batch with the image list of its first try (%d rows; the images parameter is not "
            "listed again): %d images already done, %d still at fal (not submitted again), %d completed at fal and "
            "fetched again (not submitted again), %d failed, %d not submitted yet",
            len(previous.entries),
            counts["done"],
            counts["submitted"],
            counts["completed"],
            counts["failed"],
            counts["pending"],
        )
        return previous

    def _finished_before(self, state: BatchState, store: Any) -> dict[str, Any]:
        """A previous try wrote the manifest and its summary, then stopped before the task was marked done (a
        crash while cleaning up): return that summary; nothing is listed, submitted or written again."""
        summary = dict(state.summary or {})
        self.log.info("This batch finished in an earlier try; its manifest is %s", summary.get("manifest"))
        state.forget(store)
        return summary

    def _requeue(self, state: BatchState) -> None:
        """Failures that a new submission may fix go back in line: at most ``max_resubmits`` times per image per
        try on average (``max_resubmits`` x the try number in all). Final failures (rejected input, app errors)
        are never submitted again; after the batch's deadline nothing is, until a later try."""
        if time.time() >= state.deadline:
            return
        budget = self.max_resubmits * self._try_number
        for key, entry in state.entries.items():
            if entry.state == "failed" and entry.retryable and entry.retries < budget:
                self.log.warning(
                    "images[%d] (%s) failed (%s); submitting it again (%d of %d)",
                    entry.index,
                    entry.source,
                    entry.error,
                    entry.retries + 1,
                    budget,
                )
                entry.retries += 1
                entry.state = "pending"
                state.touch(key)

    def _cancel_entries(self, state: BatchState, entries: list[BatchEntry]) -> None:
        """Cancel these entries' requests at fal. Runs its own event loop in a thread, so it also works from
        ``on_kill`` while the task's loop is running."""
        refs = [self._reference(state, entry) for entry in entries if entry.state == "submitted" and entry.request_id]
        if not refs:
            return
        from airflow_provider_sam3.hooks.fal import FalHook
        from airflow_provider_sam3.triggers.batch import cancel_all

        hook = FalHook(self.fal_conn_id)
        try:
            hook.get_settings()  # here: the thread below must not talk to the task supervisor
        except Exception as error:  # noqa: BLE001 - on_kill must not raise; say why nothing was cancelled
            self.log.warning("Could not cancel this batch's %d requests at fal: %s", len(refs), error)
            return

        async def cancel() -> dict[str, str]:
            try:
                return await cancel_all(hook, refs)
            finally:
                await hook.aclose()

        outcomes: dict[str, str] = {}
        worker = threading.Thread(target=lambda: outcomes.update(asyncio.run(cancel())), daemon=True)
        worker.start()
        worker.join(CANCEL_WAIT_SECONDS)
        self.log.info("Sent %d cancels to fal for requests of this batch", len(outcomes))

    @staticmethod
    def _reference(state: BatchState, entry: BatchEntry) -> RequestReference:
        from airflow_provider_sam3.models.batch import request_id_of
        from airflow_provider_sam3.triggers.batch import reference_for

        request_id = request_id_of(entry)
        explicit = {request_id: entry.urls} if entry.urls else None
        return reference_for(request_id, state.endpoint_id, state.url_templates or {}, explicit)

    # ------------------------------------------------------------------ one stay on the worker after another

    def _run(
        self,
        context: Any,
        endpoint: Endpoint,
        state: BatchState,
        folder: Any,
        bodies: dict[str, dict[str, Any]],
        event: dict[str, Any] | None,
    ) -> Any:
        store = context.get("task_state_store")
        try:
            waiting = asyncio.run(self._work(endpoint, state, folder, bodies, event, store))
        except Exception as error:
            state.save(store)
            self._write_stopped_manifest(state, folder, str(error))
            raise
        if waiting is None:
            return self._finish(context, endpoint, state, folder)
        request_ids, fire_at = waiting
        from airflow_provider_sam3.triggers.batch import FalBatchTrigger

        self.defer(
            trigger=FalBatchTrigger(
                endpoint_id=state.endpoint_id,
                url_templates=state.url_templates or {},
                request_ids=request_ids,
                fal_conn_id=self.fal_conn_id,
                deadline=state.deadline,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                fire_at=fire_at,
                progress=self._progress(state),
                explicit_urls=self._explicit_urls(state, request_ids),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=max(state.deadline - time.time(), 0) + DEFER_GRACE_SECONDS),
        )

    def _write_stopped_manifest(self, state: BatchState, folder: Any, reason: str) -> None:
        """The try fails before the batch's end: list every image anyway. The state is kept, so a retry (or a
        clear, once the cause is fixed) goes on without paying again for what was submitted."""
        from airflow_provider_sam3.operators.batch_results import write_manifest

        try:
            manifest = write_manifest(folder, list(state.entries.values()), keep_parts=True, stopped=reason)
        except Exception as failure:  # noqa: BLE001 - the error that stopped the batch is the one to raise
            self.log.warning("Could not write the manifest of the stopped batch: %s", failure)
            return
        self.log.error(
            "The batch stopped: %s. Every image is listed in %s; a retry, or a clear once the cause is "
            "fixed, goes on without paying again for what was already submitted",
            reason,
            manifest,
        )

    # ------------------------------------------------------------------ the end

    def _finish(self, context: Any, endpoint: Endpoint, state: BatchState, folder: Any) -> dict[str, Any]:
        from airflow_provider_sam3.operators.batch_results import remove_parts, write_manifest
        from airflow_provider_sam3.operators.completion import as_task_error

        entries = state.ordered()
        manifest = write_manifest(folder, entries, keep_parts=True)  # may find rows lost since: count after it
        missing = [e for e in entries if state.outcome_of(e).state != "done"]
        failing = self.on_image_failure == "fail" and bool(missing)
        counts = state.counts()
        price = endpoint.estimate_cost(requests=1)
        submissions = sum(e.submissions for e in entries)
        billed = sum(e.billed for e in entries)
        cost = round(price * billed, 6) if price is not None else None
        summary: dict[str, Any] = {
            "schema_version": 1,
            "kind": BATCH_SUMMARY_KIND,
            "endpoint_id": endpoint.endpoint_id,
            "images": len(entries),
            "repeats": sum(1 for e in entries if e.state == "repeat"),
            "succeeded": counts["done"],
            "failed": counts["failed"],
            "invalid": counts["invalid"],
            "submissions": submissions,
            "resubmissions": sum(e.retries for e in entries),
            "billed_requests": billed,
            "cost_usd": cost,
            "cost_estimate_usd": state.estimate_usd,
            "wall_seconds": round(time.time() - state.started_at, 3),
            "output_path": str(folder),
            "manifest": str(manifest),
            "failures": [
                {
                    "index": e.index,
                    "source": e.source,
                    "status": state.outcome_of(e).state,
                    "error": state.outcome_of(e).error,
                }
                for e in missing
            ][:SUMMARY_FAILURES_SHOWN],
        }
        self.log.info(
            "Batch finished: %d of %d images succeeded, %d failed, %d invalid; %d submissions (%d resubmissions); "
            "fal bills %d completed requests: %s (estimated %s); manifest: %s",
            counts["done"],
            len(entries),
            counts["failed"],
            counts["invalid"],
            submissions,
            summary["resubmissions"],
            billed,
            f"${cost:.4f}" if cost is not None else "an unpublished price",
            f"${state.estimate_usd:.4f}" if state.estimate_usd is not None else "unknown",
            manifest,
        )
        if failing:
            state.save(context.get("task_state_store"))
            first = summary["failures"][0]
            final = all(not state.outcome_of(e).retryable for e in missing)
            then = (
                "only final failures remain (rejected input, app errors, invalid images): a retry would not "
                "change them, so the task fails without retrying"
                if final
                else "a retry submits only those images again"
            )
            error = FalRequestError(
                f"{len(missing)} of {len(entries)} images have no result (first: images[{first['index']}] "
                f"{first['source']}: {first['error']}). Every image is listed in {manifest}; {then}; set "
                "on_image_failure='report' to succeed with failures"
            )
            raise as_task_error(error, retry_useless=final)
        store = context.get("task_state_store")
        state.summary = summary  # first: a crash in the clean-up below returns this summary on the retry
        state.save(store)
        remove_parts(folder)
        state.forget(store)
        return summary
