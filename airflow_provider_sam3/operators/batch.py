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
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import conf

from airflow_provider_sam3.batch.cancels import WORKER_ON_KILL_SECONDS
from airflow_provider_sam3.batch.inputs import DEFAULT_UPLOAD_ABOVE_BYTES
from airflow_provider_sam3.batch.options import DEFAULT_MAX_IN_FLIGHT, BatchOptions
from airflow_provider_sam3.batch.state import BatchState
from airflow_provider_sam3.exceptions import (
    BatchHalt,
    FalRequestError,
    InputValidationError,
    StateStoreRefusedError,
)
from airflow_provider_sam3.guards.files import DEFAULT_MAX_INPUT_BYTES
from airflow_provider_sam3.guards.structure import check_structure
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_sam3.links import BatchManifestLink, Sam3TabLink
from airflow_provider_sam3.operators.batch_finish import cancel_entries, finish_batch, stop_batch
from airflow_provider_sam3.operators.batch_resume import earlier_batch, finished_summary
from airflow_provider_sam3.operators.batch_start import (
    batch_endpoint,
    cache_settings,
    count_answered,
    input_limits,
    new_batch_state,
    shared_arguments,
)
from airflow_provider_sam3.operators.kept_result import keep_failure, keep_inputs, keeps_result
from airflow_provider_sam3.operators.preflight import as_seconds
from airflow_provider_sam3.operators.queue_options import QueueOptionsOperator
from airflow_provider_sam3.storage.state_store import guarded, run_epoch

if TYPE_CHECKING:
    from airflow_provider_sam3.batch.engine import BatchEngine
    from airflow_provider_sam3.batch.options import Waiting
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.hooks.fal import FalHook

__all__ = ["DEFAULT_BATCH_TIMEOUT", "DEFER_GRACE_SECONDS", "Sam3BatchOperator"]

DEFAULT_BATCH_TIMEOUT = timedelta(hours=6)
CLAIM_WAIT_SECONDS = 30
"""How long a deferrable batch left with only images other tasks are paying for waits off the worker."""
DEFER_GRACE_SECONDS = 120


class Sam3BatchOperator(QueueOptionsOperator):
    """Segment (or embed) many images with one SAM 3 image endpoint; every image ends in the manifest.

    :param images: the images (templated): a list of URLs, paths or ObjectStoragePaths, or of mappings
        ``{"image": ..., "prompt": ...}`` with per-image fields; a folder; a glob (``/data/*.jpg``,
        ``s3://conn@bucket/photos/*.png``); or an XCom holding one of these.
    :param kind: ``image`` (mask images), ``image-rle`` (RLE masks) or ``embed`` (embeddings).
    :param version: ``"3"`` or ``"3.1"``.
    :param arguments: fields shared by every image (templated), e.g. ``{"prompt": "shoe", "max_masks": 4}``;
        an image's own fields win. Segmentation batches ask for scores, boxes and inline outputs unless told
        otherwise (see ``operators.batch_start.BATCH_DEFAULTS``).
    :param output_path: where outputs and the manifest go (required, templated): an absolute path, a ``file://``
        or object-store URL, or an ObjectStoragePath. Each task writes only in its own folder,
        ``<output_path>/<dag_id>/<run_id>/<task_id>[/<map_index>]/`` (``manifest.jsonl``, and each image's
        outputs under ``<request_id>/``), so batches can share an output_path; the summary names the manifest.
    :param max_in_flight: most requests waiting at fal at once (default 256, at most 600 when deferrable: the
        trigger holds their ids in its kwargs). Requests beyond your account's concurrency only queue at fal; the
        bound keeps the trigger small, leaves room for other work on the same account, and lets a clear cancel
        every waiting request within Airflow's 30 s on_kill window.
    :param upload_above_bytes: input files larger than this are uploaded to fal's storage and sent as URLs
        (default 4 MiB); smaller ones are sent inline as data URIs. ``None``: always inline.
    :param max_input_bytes: input files larger than this are refused before anything is sent (default 64 MiB).
    :param priority, start_timeout, hint, webhook_url, media_expires_in, store_io: fal's queue options for every
        request of the batch, as on the single-image operators (``QueueOptionsOperator``'s, checked first).
    :param result_cache, cache_mode, cache_max_age, cache_salt, cache_urls: the result cache, as on the single-image
        operators (``QueueOptionsOperator``'s): an image whose request is in it is answered without being sent,
        identical requests within the batch are sent once, and tasks sharing it claim a key before paying for it.
    :param shard_index, shard_count: run one shard of the listing: the images whose source hashes to
        ``shard_index`` (0 to ``shard_count - 1``). Map ``shard_index`` with ``.expand(shard_index=[0, 1, ...])``
        to spread one listing over several tasks, then join their manifests with ``Sam3MergeManifestsOperator``.
    :param submit_concurrency: submit calls in flight at once.
    :param max_resubmits: how many times an image whose request failed in a retryable way is submitted again.
    :param on_image_failure: ``"fail"`` fails the task when any image failed (after writing the manifest; a
        retry submits only the failed images again); ``"report"`` succeeds and reports them.
    :param max_cost_usd: refuse to start a batch whose estimated cost is above this.
    :param skip_invalid: record unusable images as ``invalid`` in the manifest instead of refusing the batch.
    :param timeout: how long the whole batch may take; then what is still at fal is cancelled.
    :param collect_every: copy outputs whenever this many requests have finished, while fal works on the rest
        (default: about five times per batch, at least 100 at a time; 0: only once all have finished).
    :param poll_interval, max_poll_interval: the batch's status rounds (default: 1 s, backing off to 5 s; also
        ``QueueOptionsOperator``'s).
    """

    template_fields: tuple[str, ...] = (
        "images",
        "arguments",
        "output_path",
        "version",
        "max_cost_usd",
        "result_cache",
        "cache_salt",
    )
    template_fields_renderers = {"arguments": "json", "images": "json"}
    ui_color = "#dfe9ff"
    operator_extra_links = (Sam3TabLink(), BatchManifestLink())

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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        submit_concurrency: int = 8,
        max_resubmits: int = 2,
        on_image_failure: str = "fail",
        max_cost_usd: float | None = None,
        skip_invalid: bool = False,
        timeout: float | timedelta = DEFAULT_BATCH_TIMEOUT,
        collect_every: int | None = None,
        upload_above_bytes: int | None = DEFAULT_UPLOAD_ABOVE_BYTES,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
        shard_index: int | None = None,
        shard_count: int | None = None,
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
        self.batch_timeout = as_seconds(timeout)
        self.collect_every = collect_every
        self.upload_above_bytes = upload_above_bytes
        self.max_input_bytes = max_input_bytes
        self.shard_index = shard_index
        self.shard_count = shard_count
        self._live: tuple[BatchEngine, FalHook] | None = None
        """The engine on the worker now and its hook (``on_kill`` stops the one and cancels through the other)."""
        self._try_number = 1
        self._epoch: int | None = None

    # ------------------------------------------------------------------ checks made before anything is sent

    def _endpoint(self) -> Endpoint:
        return batch_endpoint(self.kind, self.version)

    def _check_options(self) -> None:
        from airflow_provider_sam3.operators.batch_checks import check_batch_options

        check_batch_options(self)

    def _folder(self, context: Any) -> Any:
        """This task's own folder under ``output_path`` (created and checked writable before anything is paid)."""
        from airflow_provider_sam3.operators.batch_checks import task_folder

        return task_folder(self, self.output_path, context)

    # ------------------------------------------------------------------ execute

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The folder (or glob base, or listing file) it was given, else the folders its images lie in."""
        from airflow_provider_sam3.operators.lineage import input_folders, task_lineage

        given = input_folders(self.images) if isinstance(self.images, str) else []
        try:
            endpoint_id: str | None = self._endpoint().endpoint_id
        except Exception:  # noqa: BLE001 - a task that failed on its parameters still reports what it can
            endpoint_id = None
        return task_lineage(self, inputs=given, endpoint_id=endpoint_id)

    get_openlineage_facets_on_failure = get_openlineage_facets_on_complete

    @keeps_result
    def execute(self, context: Any) -> Any:
        from airflow_provider_sam3.batch.listing import resolve_images
        from airflow_provider_sam3.batch.planning import check_cost, requeue_failures
        from airflow_provider_sam3.operators.fetched_results import as_task_error

        self._try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        self._epoch = run_epoch(context)
        store = guarded(context.get("task_state_store"))
        try:
            for name in ("arguments", "output_path", "version", "max_cost_usd", "result_cache", "cache_salt"):
                check_structure(getattr(self, name), name)
            endpoint = self._endpoint()
            self._check_options()
            folder = self._folder(context)
            state = earlier_batch(store, endpoint, self.fal_conn_id, self.log)
            if state is not None and state.summary is not None:
                summary = finished_summary(state, store, self._epoch, self.log, folder)
                if summary is not None:
                    return summary
                state = None
            if state is None:
                state = new_batch_state(self, endpoint, resolve_images(self.images))
            assert self.batch_timeout is not None  # checked before anything runs
            state.deadline = time.time() + self.batch_timeout  # each try gets the whole timeout
            requeue_failures(state, self._options(endpoint), self.log)  # earlier tries' retryable failures
            estimate = check_cost(
                endpoint,
                state,
                self.max_cost_usd,
                self.max_resubmits,
                self.log,
                answered=lambda: count_answered(self, self._options(endpoint), endpoint, state, folder),
            )
        except InputValidationError as error:
            raise as_task_error(error, retry_useless=True) from error
        if state.estimate_usd is None:
            state.estimate_usd = estimate
        state.save(store)
        return self._run(context, endpoint, state, folder, event=None)

    @keeps_result
    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the batch trigger fired: collect what finished, then submit more, wait again or finish."""
        if not isinstance(event, dict) or event.get("status") not in ("finished", "progress", "timeout", "error"):
            raise FalRequestError(f"the batch trigger sent an event this provider does not understand: {event!r}")
        return self._resume(context, event)

    @keeps_result
    def execute_after_claim_wait(self, context: Any, event: Any = None) -> Any:
        """Resumed after waiting off the worker for keys other tasks were paying for: look them up again."""
        return self._resume(context, None)

    def _resume(self, context: Any, event: dict[str, Any] | None) -> Any:
        """Back on the worker after a deferral: the batch as the task state store holds it, one more stay."""
        from airflow_provider_sam3.endpoints import get_endpoint

        self._try_number = max(1, int(getattr(context.get("ti"), "try_number", 1) or 1))
        self._epoch = run_epoch(context)
        store = guarded(context.get("task_state_store"))
        state = BatchState.load(store)
        if state is None:
            raise FalRequestError(
                "the batch's entries are missing from the task state store; the task cannot tell "
                "which images were submitted. Clear the task to start the batch again"
            )
        return self._run(context, get_endpoint(state.endpoint_id), state, self._folder(context), event=event)

    def on_kill(self) -> None:
        """The task was killed while on the worker: send nothing more, and cancel what is still queued at fal (a
        request already running is billed whatever happens: it is left for a later try to fetch). The trigger's
        on_kill covers a deferred batch."""
        if self._live is not None:
            engine, hook = self._live
            engine.halted = True
            submitted = engine.state.in_state("submitted")
            cancel_entries(hook.detached_copy(), engine.state, submitted, self.log, budget=WORKER_ON_KILL_SECONDS)

    def _options(self, endpoint: Endpoint) -> BatchOptions:
        """The engine's options, from this operator's parameters (checked once, before anything runs)."""
        return BatchOptions(
            deferrable=self.deferrable,
            max_in_flight=self.max_in_flight,
            submit_concurrency=self.submit_concurrency,
            max_resubmits=self.max_resubmits,
            collect_every=self.collect_every,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            submit_options=self.checked_queue_options(),
            try_number=self._try_number,
            shared_arguments=shared_arguments(endpoint, self.arguments),
            limits=input_limits(self),
        )

    def _keep_failure(self, endpoint: Endpoint, state: BatchState, folder: Any) -> None:
        """What the failing batch knew, for its lineage (never in the way of the error being raised)."""
        from airflow_provider_sam3.batch.manifest import MANIFEST_FILE
        from airflow_provider_sam3.batch.summary import build_summary

        try:
            keep_inputs(self, (entry.source for entry in state.ordered()))
            keep_failure(self, build_summary(endpoint, state, folder, folder / MANIFEST_FILE))
        except Exception as error:  # noqa: BLE001 - lineage is best effort; the task's own error matters
            self.log.debug("no lineage for this failed batch: %s", error)

    # ------------------------------------------------------------------ one stay on the worker after another

    def _run(
        self, context: Any, endpoint: Endpoint, state: BatchState, folder: Any, event: dict[str, Any] | None
    ) -> Any:
        from airflow_provider_sam3.operators.fetched_results import as_task_error

        store = guarded(context.get("task_state_store"))

        async def stay() -> Any:
            from dataclasses import replace

            from airflow_provider_sam3.batch.engine import BatchEngine
            from airflow_provider_sam3.hooks.fal import FalHook

            hook = FalHook(self.fal_conn_id)
            options = self._options(endpoint)
            cache = cache_settings(self, (await hook.aget_settings()).result_cache, folder)
            engine = BatchEngine(hook, endpoint, state, folder, store, replace(options, cache=cache), self.log)
            self._live = (engine, hook)
            try:
                return await engine.run(event)
            finally:
                self._live = None
                await hook.aclose()

        try:
            waiting = asyncio.run(stay())
        except StateStoreRefusedError as refused:
            self.log.error("%s", refused)  # nothing more is written: the next try may already be running
            self._keep_failure(endpoint, state, folder)
            raise as_task_error(refused) from refused
        except BatchHalt as halt:
            stop_batch(store, state, folder, str(halt.error), self.log)
            self._keep_failure(endpoint, state, folder)
            raise as_task_error(halt.error, retry_useless=halt.final) from halt.error
        except Exception as error:
            stop_batch(store, state, folder, str(error), self.log)
            self._keep_failure(endpoint, state, folder)
            raise
        if waiting is None:
            if not isinstance(self.images, str):  # the folder it was given is named as is
                keep_inputs(self, (entry.source for entry in state.ordered()))
            try:
                return finish_batch(store, endpoint, state, folder, self.on_image_failure, self.log, epoch=self._epoch)
            except Exception:
                self._keep_failure(endpoint, state, folder)
                raise
        self._defer(state, waiting)

    def _defer(self, state: BatchState, waiting: Waiting) -> None:
        """Off the worker until the batch trigger reports, or, with nothing at fal, for a while (its images wait
        for keys other tasks are paying for)."""
        timeout = timedelta(seconds=max(state.deadline - time.time(), 0) + DEFER_GRACE_SECONDS)
        if not waiting.request_ids:  # only images whose keys other tasks are paying for: look again later
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.log.info("Waiting %d s off the worker for results other tasks are paying for", CLAIM_WAIT_SECONDS)
            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=CLAIM_WAIT_SECONDS)),
                method_name="execute_after_claim_wait",
                timeout=timeout,
            )
        self.defer(
            trigger=self._trigger(state, waiting.request_ids, waiting.fire_at),
            method_name="execute_complete",
            timeout=timeout,
        )

    def _trigger(self, state: BatchState, request_ids: list[str], fire_at: int | None) -> Any:
        from airflow_provider_sam3.batch.polling import explicit_urls
        from airflow_provider_sam3.triggers.batch import FalBatchTrigger, kwargs_size

        trigger = FalBatchTrigger(
            endpoint_id=state.endpoint_id,
            url_templates=state.url_templates or {},
            request_ids=request_ids,
            fal_conn_id=self.fal_conn_id,
            deadline=state.deadline,
            poll_interval=self.poll_interval,
            max_poll_interval=self.max_poll_interval,
            fire_at=fire_at,
            progress=state.progress(),
            explicit_urls=explicit_urls(state, request_ids),
        )
        self.log.info(
            "Deferring on %d requests at fal (trigger kwargs: %d bytes)", len(request_ids), kwargs_size(trigger)
        )
        return trigger
