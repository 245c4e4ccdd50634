"""FalQueueOperator: one fal request per task, waited for in the triggerer or on the worker, never paid twice.

The path of a request: render -> validate (nothing is sent on bad input) -> reattach to the request a previous
try left in the task state store, or submit and save its reference there at once -> wait (defer to
``FalRequestTrigger``, or poll on the worker) -> fetch, parse, copy outputs -> clear the state store -> XCom.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import conf

from airflow_provider_sam3.exceptions import (
    FalDeadlineExceededError,
    FalRequestCancelledError,
    FalRequestNotFoundError,
    Sam3ProviderError,
)
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_sam3.links import FalRequestLink, Sam3TabLink
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.fetched_results import (
    as_task_error,
    fetch_result_document,
    raise_for_event,
    raise_task_error,
)
from airflow_provider_sam3.operators.kept_result import keeps_result
from airflow_provider_sam3.operators.preflight import (
    MAX_TIMEOUT_SECONDS,
    SuggestingPartial,
    as_seconds,
    unknown_parameter_error,
)
from airflow_provider_sam3.operators.queue_options import QueueOptionsOperator
from airflow_provider_sam3.operators.reattach import ReattachingSubmit
from airflow_provider_sam3.operators.request_bodies import PreparedRequest, prepare_fal_request

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.models.submit_options import SubmitOptions
    from airflow_provider_sam3.operators.cached_results import CacheSlot

__all__ = ["DEFAULT_TIMEOUT", "DEFER_GRACE_SECONDS", "FalQueueOperator", "hook_for"]

DEFAULT_TIMEOUT = timedelta(hours=1)
DEFER_GRACE_SECONDS = 120
"""Airflow's own defer timeout fires this long after the trigger's deadline, so the trigger cancels first."""


def hook_for(conn_id: str) -> FalHook:
    """The hook, imported on first use: DAG files import this module, and only execution needs the hook."""
    from airflow_provider_sam3.hooks.fal import FalHook

    return FalHook(conn_id)


class FalQueueOperator(ReattachingSubmit, QueueOptionsOperator):
    """Run any fal endpoint through fal's queue.

    :param endpoint_id: e.g. ``fal-ai/sam-3/image``. SAM 3 endpoints are validated locally with the registry's
        models before anything is sent; other endpoints are sent as given.
    :param arguments: the request body (templated).
    :param fal_conn_id: the ``fal`` connection; without it ``FAL_KEY`` is used.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``). Both modes return
        the same document.
    :param wait_for_completion: ``False`` submits and returns the request reference (wait with ``FalRequestSensor``).
    :param timeout: how long the request may take from submission; then it is cancelled and the task fails.
    :param output_path: copy every output file here (``file://``, ``s3://``, any ObjectStoragePath) before fal's
        URLs expire; the document carries both locations. Templated.
    :param forward_logs: copy fal's request logs into the task log while waiting.

    The queue options (``poll_interval``, ``max_poll_interval``, ``priority``, ``start_timeout``, ``webhook_url``,
    ``hint``, ``media_expires_in``, ``store_io``) and the result cache's (``result_cache``, ``cache_mode``,
    ``cache_max_age``, ``cache_salt``, ``cache_urls``) are ``QueueOptionsOperator``'s, shared with the batch
    operator and checked before anything is sent.
    """

    template_fields: tuple[str, ...] = ("endpoint_id", "arguments", "output_path", "result_cache", "cache_salt")
    template_fields_renderers = {"arguments": "json"}
    operator_extra_links = (FalRequestLink(), Sam3TabLink())
    ui_color = "#e8f0ff"

    def __init__(
        self,
        *,
        endpoint_id: str | None = None,
        arguments: dict[str, Any] | None = None,
        fal_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_completion: bool = True,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        output_path: Any = None,
        forward_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        try:
            super().__init__(**kwargs)
        except TypeError as error:  # Airflow's "Invalid arguments were passed": name the closest parameters
            better = unknown_parameter_error(type(self), kwargs.get("task_id"), kwargs)
            if better is None:
                raise
            raise better from error
        self.endpoint_id = endpoint_id
        self.arguments = arguments or {}
        self.fal_conn_id = fal_conn_id
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self.request_timeout = as_seconds(timeout)
        self.output_path = output_path
        self.forward_logs = forward_logs
        self._inflight: tuple[FalHook, RequestReference] | None = None
        """The hook and request the worker is waiting for (``on_kill`` cancels it while it is queued)."""

    partial = SuggestingPartial()

    @property
    def hook(self) -> FalHook:
        return hook_for(self.fal_conn_id)

    # ------------------------------------------------------------------ what to send

    def prepare_request(self, context: Any) -> PreparedRequest:
        """Validate the rendered parameters; raise ``InputValidationError`` before anything is sent."""
        return prepare_fal_request(
            self.endpoint_id,
            self.arguments,
            output_path=self.output_path,
            conn_id=self.fal_conn_id,
            log=self.log,
        )

    def _check_queue_options(self) -> SubmitOptions:
        """fal's queue options and this request's timeout, checked before anything is sent; the options the
        submit sends."""
        from airflow_provider_sam3.exceptions import InputValidationError

        options = self.checked_queue_options()
        if self.request_timeout is not None and not 0 < self.request_timeout <= MAX_TIMEOUT_SECONDS:
            raise InputValidationError(
                "timeout",
                f"{self.request_timeout!r} must be a positive duration of at most {MAX_TIMEOUT_SECONDS / 86400:g} days",
                allowed="a number of seconds above 0 or a timedelta",
            )
        return options

    def _check_output_path(self) -> None:
        """A bad ``output_path`` is refused before submitting: copying happens after fal has been paid. A local
        one is created if missing and proved writable."""
        from airflow_provider_sam3.operators.preflight import preflight_output_path

        if self.output_path is not None:
            preflight_output_path("output_path", self.output_path)

    # ------------------------------------------------------------------ execute

    def validate(self, context: Any) -> PreparedRequest:
        """Everything checked before anything is sent: every templated value's depth and size, the request body,
        the queue options and ``output_path``."""
        from airflow_provider_sam3.guards.structure import check_structure

        for name in self.template_fields:
            check_structure(getattr(self, name, None), name)
        options = self._check_queue_options()
        self._check_output_path()
        request = self.prepare_request(context)  # last; its uploads are made only when it is sent
        return dataclasses.replace(request, options=options)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render as Airflow does, but a template that fails names its field (Airflow's error does not)."""
        from airflow_provider_sam3.exceptions import InputValidationError

        if not jinja_env:
            jinja_env = self.get_template_env()
        seen: set[int] = set()
        for name in self.template_fields:
            try:
                self._do_render_template_fields(self, (name,), context, jinja_env, seen)
            except Exception as error:
                template = getattr(self, name, None)
                shown = repr(template) if isinstance(template, str) and len(template) <= 120 else "its template"
                failure = InputValidationError(
                    name,
                    f"{shown} failed to render ({type(error).__name__}: {error}); nothing was sent to fal",
                    allowed="a Jinja template that renders with this run's context (params, ti, ds, ...)",
                )
                failure.__cause__ = error
                raise as_task_error(failure, retry_useless=True) from failure

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_provider_sam3.operators.lineage import parameter_inputs, task_lineage

        return task_lineage(self, inputs=parameter_inputs(self))

    get_openlineage_facets_on_failure = get_openlineage_facets_on_complete

    @keeps_result
    def execute(self, context: Any) -> Any:
        from airflow_provider_sam3.exceptions import InputValidationError
        from airflow_provider_sam3.operators.cached_results import released_on_failure

        try:
            request = self.validate(context)
            hook = self.hook
            hook.get_settings()  # the connection's host and extras, checked before anything is sent
            slot = self._cache_slot(request, hook, context)
        except InputValidationError as error:  # a retry would render and validate the same values
            raise as_task_error(error, retry_useless=True) from error
        earlier = self._finished_before(context, request)
        if earlier is not None:
            return earlier
        cached = self._from_cache(slot, request) if slot is not None else None
        if slot is not None and cached is None:
            from airflow_provider_sam3.operators.cached_results import wait_while_claimed

            lease = self.request_timeout or DEFAULT_TIMEOUT.total_seconds()
            cached = wait_while_claimed(self, slot, request.image, lease)
        if cached is not None:
            return cached
        with released_on_failure(slot):
            return self._send(context, hook, request, slot)

    def _send(self, context: Any, hook: FalHook, request: PreparedRequest, slot: CacheSlot | None) -> Any:
        """Submit the request (or reattach to the one an earlier try sent), then wait for it here or deferred."""
        request = request.uploaded(hook, self.log)  # a large local image or video goes to fal's storage now
        reference, finished = self._reattach_or_submit(context, hook, request)
        if not self.wait_for_completion:  # the image's size rides along, for the sensor's pixel boxes and RLE
            value = {**reference.to_dict(), **({"image": request.image} if request.image else {})}
            self._keep_finished(context, reference, value)
            return value
        if finished is not None:  # fetched here: deferring on a finished request would only add a round trip
            return self._finish(context, hook, reference, image=request.image, metrics=finished.metrics, cache=slot)

        deadline = (reference.submitted_at or time.time()) + (self.request_timeout or DEFAULT_TIMEOUT.total_seconds())
        if self.deferrable:
            from airflow_provider_sam3.triggers.fal import FalRequestTrigger

            self.defer(
                trigger=FalRequestTrigger(
                    reference=reference.to_dict(),
                    fal_conn_id=self.fal_conn_id,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                    forward_logs=self.forward_logs,
                    echo={"image": request.image, "cache_key": slot.key if slot else None},
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(deadline - time.time(), 0) + DEFER_GRACE_SECONDS),
            )
        return self._wait_on_worker(context, hook, reference, deadline, request.image, slot)

    @keeps_result
    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        """Resumed after the trigger fired: check the event, fetch the result, publish it."""
        from airflow_provider_sam3.operators.cached_results import released_on_failure

        try:
            reference = raise_for_event(event)
            assert event is not None  # raise_for_event refused anything but a dict
            echo = event.get("echo") or {}
            slot = self._slot_for_key(echo.get("cache_key"), context, reference.endpoint_id)
            with released_on_failure(slot):
                return self._finish(
                    context, self.hook, reference, image=echo.get("image"), metrics=event.get("metrics"), cache=slot
                )
        except FalRequestCancelledError as error:
            return self._submit_anew_after_cancel(context, error)

    # ------------------------------------------------------------------ the result cache

    @keeps_result
    def execute_after_claim_wait(self, context: Any, event: Any = None) -> Any:
        """Resumed after waiting off the worker while another task paid for this very request: start again (its
        result is in the cache by now, or this task claims the request and pays)."""
        return self.execute(context)

    def _cache_slot(self, request: PreparedRequest, hook: FalHook, context: Any) -> CacheSlot | None:
        """The request's place in ``result_cache`` (or the connection's extra ``result_cache``; its settings
        checked), or ``None`` when it is not cached."""
        from airflow_provider_sam3.operators.cached_results import cache_slot, task_owner

        if not self.wait_for_completion:  # the caller wants a request reference, which a hit does not have
            return None
        return cache_slot(
            request,
            result_cache=self.result_cache or hook.get_settings().result_cache,
            mode=self.cache_mode,
            max_age=self.cache_max_age,
            salt=self.cache_salt,
            key_urls=self.cache_urls,
            log=self.log,
            owner=task_owner(context),
        )

    def _from_cache(self, slot: CacheSlot, request: PreparedRequest) -> Any:
        """The task's document from the cache when the request's result is there (nothing is sent), else None."""
        from airflow_provider_sam3.operators.cached_results import document_from_cache

        hit = slot.cache.get(slot.key)
        if hit is None:
            return None
        return document_from_cache(
            hit, endpoint_id=slot.endpoint_id, image=request.image, output_path=self.output_path, log=self.log
        )

    def _slot_for_key(self, key: Any, context: Any, endpoint_id: str) -> CacheSlot | None:
        """The cache slot a deferred request's key names (the key came back in the trigger's event)."""
        from airflow_provider_sam3.operators.cached_results import CacheSlot, task_owner
        from airflow_provider_sam3.storage.result_cache import ResultCache

        folder = self.result_cache or (self.hook.get_settings().result_cache if isinstance(key, str) else None)
        if not isinstance(key, str) or not folder:
            return None
        cache = ResultCache(folder, mode=self.cache_mode, max_age=self.cache_max_age, log=self.log)
        return CacheSlot(cache, key, endpoint_id, task_owner(context))

    def on_kill(self) -> None:
        """The synchronous path was killed (the trigger's ``on_kill`` covers the deferred one): cancel the request
        if it is still queued at fal; a running one is billed whatever happens and is left for a clear to fetch."""
        if self._inflight is not None:
            self._cancel_if_queued(*self._inflight)

    # ------------------------------------------------------------------ waiting and finishing

    def _wait_on_worker(
        self,
        context: Any,
        hook: FalHook,
        reference: RequestReference,
        deadline: float,
        image: dict[str, Any] | None,
        slot: CacheSlot | None = None,
    ) -> Any:
        from airflow_provider_sam3.triggers.fal import forward_new_logs

        seen: dict[str, Any] = {"logs": 0, "state": None}

        def on_status(status: Any) -> None:
            if status.state != seen["state"]:
                self.log.info("fal %s request %s: %s", reference.endpoint_id, reference.request_id, status.describe())
                seen["state"] = status.state
            if self.forward_logs:
                seen["logs"] = forward_new_logs(self.log, status, seen["logs"], reference.request_id)

        self._inflight = (hook, reference)
        try:
            status = hook.wait(
                reference,
                deadline=deadline,
                on_status=on_status,
                with_logs=self.forward_logs,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
            )
        except FalDeadlineExceededError:
            self._cancel_quietly(hook, reference)
            raise
        except FalRequestCancelledError as error:
            self._inflight = None
            return self._submit_anew_after_cancel(context, error)
        except Sam3ProviderError as error:
            raise_task_error(error)
        finally:
            self._inflight = None
        try:
            return self._finish(context, hook, reference, image=image, metrics=status.metrics, cache=slot)
        except FalRequestCancelledError as error:  # cancelled between its last status and the result call
            return self._submit_anew_after_cancel(context, error)

    def _finish(
        self,
        context: Any,
        hook: FalHook,
        reference: RequestReference,
        *,
        image: dict[str, Any] | None,
        metrics: dict[str, Any] | None,
        cache: CacheSlot | None = None,
    ) -> Any:
        try:
            document = fetch_result_document(
                hook, reference, image=image, metrics=metrics, output_path=self.output_path, log=self.log, cache=cache
            )
        except FalRequestNotFoundError:
            self._mark_result_gone(context)
            raise
        self._keep_finished(context, reference, document)
        return document
