"""FalRequestSensor: wait for a request another task submitted (``wait_for_completion=False``)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airflow_provider_sam3.exceptions import InputValidationError, Sam3ProviderError
from airflow_provider_sam3.hooks.settings import DEFAULT_CONN_ID
from airflow_provider_sam3.links import LINK_XCOM_KEY, FalRequestLink, request_link
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.fetched_results import (
    fetch_result_document,
    raise_for_event,
    raise_task_error,
)
from airflow_provider_sam3.operators.kept_result import keeps_result
from airflow_provider_sam3.operators.queue import hook_for

__all__ = ["FalRequestSensor"]


class FalRequestSensor(BaseSensorOperator):
    """Wait for an existing fal request and return its result document (with its cost).

    :param reference: the request reference (a dict, typically ``XComArg`` of a submitting task). Templated.
    :param deferrable: wait in the triggerer; otherwise ``poke`` (``mode="poke"`` or ``"reschedule"``).
    :param output_path: copy outputs here before fal's URLs expire.
    :param cancel_on_stop: cancel the request at fal when this sensor times out or is cleared or marked. Off by
        default: the request belongs to the task that submitted it, and a cleared sensor waits for it again.

    Deferrable, it polls at the connection's ``poll_interval`` (2 s by default, backing off to its
    ``max_poll_interval``) unless ``poke_interval`` is given: Airflow's 60 s default would make a 4 s request take a
    minute. In ``poke`` and ``reschedule`` modes it follows ``poke_interval`` as every sensor does.

    A timeout raises ``AirflowSensorTimeout`` in every mode, so ``soft_fail`` and ``never_fail`` apply as usual.
    """

    template_fields = ("reference", "output_path")
    operator_extra_links = (FalRequestLink(),)

    def __init__(
        self,
        *,
        reference: Any,
        fal_conn_id: str = DEFAULT_CONN_ID,
        output_path: Any = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        cancel_on_stop: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reference = reference
        self.fal_conn_id = fal_conn_id
        self.output_path = output_path
        self.deferrable = deferrable
        self.cancel_on_stop = cancel_on_stop
        self.poke_interval_given = "poke_interval" in kwargs

    def _reference_dict(self) -> Any:
        """The reference as given or rendered, its nesting and size bounded (``guards.structure``) before it is
        read."""
        from airflow_provider_sam3.guards.structure import check_structure, parse_rendered

        value = self.reference
        if isinstance(value, str):  # a JSON request reference, as XCom or dag_run.conf renders it
            value = parse_rendered(value.strip(), "reference")
        check_structure(value, "reference")
        return value

    def _image(self) -> dict[str, Any] | None:
        """The image's size the submitting task passed along with its reference, if any."""
        value = self._reference_dict()
        image = value.get("image") if isinstance(value, dict) else None
        return image if isinstance(image, dict) else None

    def _reference(self) -> RequestReference:
        """The reference, refused when it is not one, or when its request id is not a fal request id."""
        from airflow_provider_sam3.hooks.trust import request_id_problem

        value = self._reference_dict()
        try:
            reference = RequestReference.from_dict(value)
        except Exception as error:  # noqa: BLE001 - pydantic or type errors alike
            raise InputValidationError(
                "reference", f"must be a request reference with endpoint_id, request_id and the queue URLs ({error})"
            ) from None
        problem = request_id_problem(reference.request_id)
        if problem:
            raise InputValidationError("reference.request_id", problem, allowed="a fal request id such as a UUID")
        return reference

    def _check_parameters(self, ref: RequestReference, queue_host: str) -> None:
        """Everything checked before the first call with the key: the timings, the output path, and that the
        reference's URLs are on the connection's queue host (a reference from XCom, a template or ``dag_run.conf``
        must not be able to send the key elsewhere)."""
        from airflow_provider_sam3.hooks.settings import MIN_POLL_INTERVAL
        from airflow_provider_sam3.hooks.trust import url_problem
        from airflow_provider_sam3.operators.preflight import finite_number, preflight_output_path

        finite_number("poke_interval", self.poke_interval)
        if self.poke_interval < MIN_POLL_INTERVAL:
            raise InputValidationError(
                "poke_interval",
                f"{self.poke_interval!r} s would poll fal too fast",
                allowed=f"at least {MIN_POLL_INTERVAL} s",
            )
        finite_number("timeout", self.timeout, minimum=0, strict_minimum=True)
        for name in ("status_url", "response_url", "cancel_url"):
            problem = url_problem(getattr(ref, name), queue_host)
            if problem:
                raise InputValidationError(
                    f"reference.{name}",
                    f"{problem}; the fal key is sent only to the connection's queue host, so "
                    "nothing was sent. Pass the reference the submitting task returned, with the same connection",
                )
        if self.output_path is not None:
            preflight_output_path("output_path", self.output_path)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_provider_sam3.operators.lineage import task_lineage

        return task_lineage(self)

    get_openlineage_facets_on_failure = get_openlineage_facets_on_complete

    @keeps_result
    def execute(self, context: Any) -> Any:
        from airflow_provider_sam3.operators.fetched_results import raise_task_error

        hook = hook_for(self.fal_conn_id)
        try:
            ref = self._reference()
            self._check_parameters(ref, hook.get_settings().queue_host)
        except InputValidationError as error:  # a retry would render and check the same values
            raise_task_error(error, retry_useless=True)
        ti = context.get("ti")
        if ti is not None:
            ti.xcom_push(key=LINK_XCOM_KEY, value=request_link(hook.get_settings().queue_host, ref.request_id))
        if not self.deferrable:
            try:
                return super().execute(context)
            except (AirflowSensorTimeout, AirflowSkipException):  # a timeout, or one that soft_fail turned into a skip
                self._cancel_if_owned(ref, "stopped without a result")
                raise
        from airflow_provider_sam3.triggers.fal import FalRequestTrigger

        deadline = time.time() + self.timeout
        self.defer(
            trigger=FalRequestTrigger(
                reference=ref.to_dict(),
                fal_conn_id=self.fal_conn_id,
                deadline=deadline,
                poll_interval=self.poke_interval if self.poke_interval_given else None,  # None: the connection's
                max_poll_interval=max(self.poke_interval, 30) if self.poke_interval_given else None,
                cancel_on_stop=self.cancel_on_stop,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + 120),
        )

    def poke(self, context: Any) -> PokeReturnValue:
        ref = self._reference()
        hook = hook_for(self.fal_conn_id)
        try:
            status = hook.status(ref)
        except Sam3ProviderError as error:
            raise_task_error(error)
        self.log.info("fal %s request %s: %s", ref.endpoint_id, ref.request_id, status.describe())
        if not status.done:
            return PokeReturnValue(is_done=False)
        document = fetch_result_document(
            hook, ref, image=self._image(), metrics=status.metrics, output_path=self.output_path, log=self.log
        )
        return PokeReturnValue(is_done=True, xcom_value=document)

    @keeps_result
    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        if isinstance(event, dict) and event.get("status") == "timeout":
            raise AirflowSensorTimeout(f"fal request {event['reference'].get('request_id')} {event.get('message')}")
        ref = raise_for_event(event)
        assert event is not None  # raise_for_event refused anything but a dict
        return fetch_result_document(
            hook_for(self.fal_conn_id),
            ref,
            image=self._image(),
            metrics=event.get("metrics"),
            output_path=self.output_path,
            log=self.log,
        )

    def on_kill(self) -> None:
        """Poke mode, cleared or marked by a user: cancel only a request this sensor was told it owns."""
        try:
            ref = self._reference()
        except InputValidationError:
            return
        self._cancel_if_owned(ref, "was stopped")

    def _cancel_if_owned(self, ref: RequestReference, why: str) -> None:
        if not self.cancel_on_stop:
            self.log.info(
                "Sensor %s; fal request %s is left running for the task that submitted it", why, ref.request_id
            )
            return
        try:
            outcome = hook_for(self.fal_conn_id).cancel(ref)
            self.log.info("Sensor %s; cancelled fal request %s: %s", why, ref.request_id, outcome)
        except Sam3ProviderError as error:
            self.log.warning("Sensor %s; cancelling fal request %s failed: %s", why, ref.request_id, error)
