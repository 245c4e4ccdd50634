"""Operator checks made before anything is sent, and the operator's handling of what a trigger or a retry finds.

No network: the queue operator's own logic, with a small in-memory stand-in for the hook and the task state store.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.settings import FalSettings
from airflow_provider_sam3.models.reference import RequestReference
from airflow_provider_sam3.operators.fetched_results import raise_for_event
from airflow_provider_sam3.operators.queue import FalQueueOperator
from airflow_provider_sam3.operators.reattach import RESULT_GONE, STATE_KEY
from airflow_provider_sam3.operators.sam3 import EmbedImageOperator, SegmentImageOperator

URL = "https://example.com/shoe.png"
ARGS = {"image_url": URL, "prompt": "shoe"}


def reference(request_id: str = "req-1") -> RequestReference:
    base = f"https://queue.example/fal-ai/sam-3/requests/{request_id}"
    return RequestReference(
        endpoint_id="fal-ai/sam-3/image",
        request_id=request_id,
        status_url=f"{base}/status",
        response_url=base,
        cancel_url=f"{base}/cancel",
        submitted_at=time.time(),
    )


class Store(dict):
    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def refused(operator: FalQueueOperator, context: dict | None = None) -> exc.InputValidationError:
    """execute() must refuse before using any hook; the cause is the InputValidationError."""
    with pytest.raises(AirflowFailException) as raised:
        operator.execute(context or {})
    assert "not retried" in str(raised.value)
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError), cause
    return cause


@pytest.fixture(autouse=True)
def no_hook(monkeypatch):
    """Any use of a real hook in these checks is a bug: they must fail before it."""
    monkeypatch.setattr(FalQueueOperator, "hook", property(lambda self: pytest.fail("the hook was used")))


@pytest.mark.parametrize(
    ("output_path", "says"),
    [
        ("out/masks", "is relative"),
        ("", "got ''"),
        ("nosuch://bucket/x", "Unsupported filesystem"),
    ],
)
def test_bad_output_path_is_refused_before_submitting(output_path, says):
    error = refused(
        FalQueueOperator(task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS, output_path=output_path)
    )
    assert error.field == "output_path" and says in str(error) and "absolute path" in str(error)


def test_output_path_under_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    error = refused(
        FalQueueOperator(
            task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS, output_path=str(blocker / "out")
        )
    )
    assert "is a file" in str(error)


def test_a_writable_output_path_passes(tmp_path):
    operator = FalQueueOperator(
        task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS, output_path=f"file://{tmp_path}/new/dir"
    )
    assert operator.validate({}).endpoint_id == "fal-ai/sam-3/image"
    # created and proved writable before paying; the probe file is gone again
    assert (tmp_path / "new" / "dir").is_dir() and list((tmp_path / "new" / "dir").iterdir()) == []


@pytest.mark.parametrize(
    ("endpoint_id", "says"),
    [
        ("fal-ai/sam-3/imag", "did you mean 'fal-ai/sam-3/image'?"),
        ("fal-ai/sam-3-1/image/embed", "is not a SAM 3 endpoint"),
        ("https://queue.fal.run/fal-ai/sam-3/image", "is not a fal endpoint id"),
        ("sam-3", "is not a fal endpoint id"),
        (" fal-ai/sam-3/image", "is not a fal endpoint id"),
    ],
)
def test_bad_endpoint_ids_are_refused(endpoint_id, says):
    error = refused(FalQueueOperator(task_id="t", endpoint_id=endpoint_id, arguments=ARGS))
    assert error.field == "endpoint_id" and says in str(error)


def test_other_fal_endpoints_still_pass_untyped():
    request = FalQueueOperator(task_id="t", endpoint_id="fal-ai/flux/dev", arguments={"prompt": "x"}).validate({})
    assert request.body == {"prompt": "x"}


def test_the_generic_operator_checks_a_sam3_image_by_its_content_like_the_typed_ones(tmp_path):
    not_a_picture = "data:image/png;base64,aGVsbG8sIHRoZXNlIGFyZSBub3Rlcw=="  # "hello, these are notes"
    error = refused(
        FalQueueOperator(
            task_id="t", endpoint_id="fal-ai/sam-3/image", arguments={"image_url": not_a_picture, "prompt": "x"}
        )
    )
    assert error.field == "image_url" and "looks like text" in str(error)
    from PIL import Image

    Image.new("RGB", (12, 8), (1, 2, 3)).save(tmp_path / "photo.png")
    request = FalQueueOperator(
        task_id="t",
        endpoint_id="fal-ai/sam-3/image",
        arguments={"image_url": str(tmp_path / "photo.png"), "prompt": "x"},
    ).validate({})
    assert request.body["image_url"].startswith("data:image/png;base64,")
    assert request.image == {"source": str(tmp_path / "photo.png"), "width": 12, "height": 8}


def test_output_path_for_an_endpoint_the_provider_does_not_know_is_refused(tmp_path):
    """It would be ignored: nothing says which parts of an unknown endpoint's output are files."""
    error = refused(
        FalQueueOperator(
            task_id="t", endpoint_id="fal-ai/flux/dev", arguments={"prompt": "x"}, output_path=f"file://{tmp_path}"
        )
    )
    assert error.field == "output_path" and "fal-ai/flux/dev" in str(error)


@pytest.mark.parametrize(
    ("options", "field", "says"),
    [
        ({"poll_interval": 0.01}, "poll_interval", "at least 0.2"),
        ({"poll_interval": -1}, "poll_interval", "at least 0.2"),
        ({"max_poll_interval": "fast"}, "max_poll_interval", "at least 0.2"),
        ({"poll_interval": 5, "max_poll_interval": 1}, "max_poll_interval", "is below poll_interval 5"),
        ({"webhook_url": "example.com/hook"}, "webhook_url", "an http(s) URL with a host"),
        ({"webhook_url": "https:///hook"}, "webhook_url", "an http(s) URL with a host"),
        ({"start_timeout": "soon"}, "start_timeout", "a number of seconds above 1"),
        ({"start_timeout": True}, "start_timeout", "a number of seconds above 1"),
        ({"priority": "urgent"}, "priority", "allowed: normal, low"),
        ({"timeout": timedelta(seconds=-1)}, "timeout", "must be a positive duration"),
    ],
)
def test_bad_queue_options_are_refused(options, field, says):
    error = refused(FalQueueOperator(task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS, **options))
    assert error.field == field and says in str(error)


def test_timeout_that_is_not_a_duration_fails_the_dag_file():
    with pytest.raises(exc.InputValidationError, match="timeout: '1h' is not a duration"):
        FalQueueOperator(task_id="t", endpoint_id="fal-ai/sam-3/image", timeout="1h")


@pytest.mark.parametrize(
    ("operator", "version", "allowed"),
    [
        (SegmentImageOperator, "4", "'3', '3.1'"),
        (EmbedImageOperator, "3.1", "'3'"),
    ],
)
def test_an_unknown_version_names_the_versions_of_that_operator(operator, version, allowed):
    error = refused(operator(task_id="t", image=URL, version=version, output_path="/tmp/x"))
    assert error.field == "version" and f"allowed: {allowed}" in str(error)


def test_numeric_versions_are_accepted():
    assert SegmentImageOperator(task_id="t", image=URL, version=3.1).validate({}).endpoint_id == "fal-ai/sam-3-1/image"


def test_a_template_that_fails_to_render_names_its_field_and_is_not_retried():
    operator = SegmentImageOperator(task_id="t", image=URL, prompt="{{ params.missing.deeper }}")
    with pytest.raises(AirflowFailException) as raised:
        operator.render_template_fields({"params": {}})
    assert isinstance(raised.value.__cause__, exc.InputValidationError)
    assert raised.value.__cause__.field == "prompt"
    assert "prompt: '{{ params.missing.deeper }}' failed to render (UndefinedError" in str(raised.value)


def test_templates_that_render_still_render():
    operator = SegmentImageOperator(task_id="t", image="{{ params.url }}", prompt="{{ params.p }}", max_masks="{{ 2 }}")
    operator.render_template_fields({"params": {"url": URL, "p": "shoe"}})
    assert (operator.image, operator.prompt, operator.max_masks) == (URL, "shoe", "2")


# ---------------------------------------------------------------------------------------- trigger events


def event(error_class: str, message: str, retryable: bool = False) -> dict[str, Any]:
    return {
        "status": "error",
        "reference": reference().to_dict(),
        "message": message,
        "error_class": error_class,
        "retryable": retryable,
    }


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("FalRequestNotFoundError", exc.FalRequestNotFoundError),
        ("FalTransientError", exc.FalTransientError),
        ("FalAppError", exc.FalAppError),
    ],
)
def test_trigger_errors_are_raised_as_the_class_the_worker_path_raises(name, cls):
    message = "fal-ai/sam-3/image request req-1: it vanished (HTTP 404)"
    with pytest.raises(cls) as raised:
        raise_for_event(event(name, message, retryable=cls is exc.FalTransientError))
    assert str(raised.value) == message  # no second "fal: " prefix
    assert raised.value.request_id == "req-1" and raised.value.endpoint_id == "fal-ai/sam-3/image"
    assert raised.value.retryable is (cls is exc.FalTransientError)


def test_trigger_errors_a_retry_cannot_fix_fail_without_retries():
    with pytest.raises(AirflowFailException) as raised:
        raise_for_event(event("FalBalanceExhaustedError", "fal: the fal account is locked"))
    assert isinstance(raised.value.__cause__, exc.FalBalanceExhaustedError)


@pytest.mark.parametrize("name", ["ValueError", "NoSuchError", "", "Sam3ProviderError"])
def test_unknown_trigger_error_classes_fall_back_to_fal_request_error(name):
    with pytest.raises(exc.FalRequestError) as raised:
        raise_for_event(event(name, "something"))
    assert type(raised.value) is exc.FalRequestError


# ---------------------------------------------------------------------------------------- expired results


class Hook:
    """Just what the operator calls; the result is gone (expired) at fal."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self._settings = FalSettings(key="k", key_source="test", queue_host="queue.example")

    def get_settings(self) -> FalSettings:
        return self._settings

    def result(self, ref: RequestReference) -> dict:
        raise exc.FalRequestNotFoundError("result expired", endpoint_id=ref.endpoint_id, request_id=ref.request_id)

    def status(self, ref: RequestReference, **_: Any):  # pragma: no cover - must not be asked
        pytest.fail("a request whose result is gone must not be reattached to")

    def submit(self, endpoint_id: str, body: dict, **_: Any) -> RequestReference:
        self.submitted.append(endpoint_id)
        return reference("req-2")


def test_a_gone_result_makes_the_next_try_submit_anew_instead_of_refetching():
    operator = FalQueueOperator(task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS)
    request = operator.validate({})
    store, hook = Store(), Hook()
    store.set(STATE_KEY, {"reference": reference().to_dict(), "fingerprint": request.fingerprint})
    with pytest.raises(exc.FalRequestNotFoundError):
        operator._finish({"task_state_store": store}, hook, reference(), image=None, metrics=None)
    assert store[STATE_KEY][RESULT_GONE] is True

    again, finished = operator._reattach_or_submit({"task_state_store": store}, hook, request)  # the retry
    assert again.request_id == "req-2" and finished is None and hook.submitted == ["fal-ai/sam-3/image"]
    assert store[STATE_KEY]["reference"]["request_id"] == "req-2" and RESULT_GONE not in store[STATE_KEY]


def test_worker_polling_uses_the_operators_intervals():
    seen = {}

    class WaitingHook(Hook):
        def wait(self, ref, **kwargs):
            seen.update(first=kwargs["poll_interval"], cap=kwargs["max_poll_interval"])
            raise exc.FalAppError("stop here")

    operator = FalQueueOperator(
        task_id="t", endpoint_id="fal-ai/sam-3/image", arguments=ARGS, poll_interval=0.3, max_poll_interval=0.6
    )
    with pytest.raises(exc.FalAppError):
        operator._wait_on_worker({}, WaitingHook(), reference(), time.time() + 60, None)
    assert seen == {"first": 0.3, "cap": 0.6}
