"""Which failed submit POSTs the hook may send again: only those after which fal certainly created nothing.

Real httpx exceptions and real fal-client errors (built by fal-client's own ``_raise_for_status`` from real httpx
responses); nothing is mocked. The end-to-end behaviour against the emulator is in
tests/integration/hook/test_hook_submit_once.py.
"""

from __future__ import annotations

import httpx
import pytest

from airflow_provider_sam3.exceptions import FalSubmitOutcomeUnknownError, FalTransientError
from airflow_provider_sam3.hooks.submit import outcome_unknown, submit_call, submit_fault, submit_options

REQUEST = httpx.Request("POST", "https://queue.fal.run/fal-ai/sam-3/image")
NGINX = "<html><head><title>503 Service Temporarily Unavailable</title></head><hr><center>nginx</center></html>"


def fal_error(code: int, text: str = '{"detail": "x"}', **headers: str) -> Exception:
    from fal_client.client import FalClientHTTPError, _raise_for_status

    response = httpx.Response(code, text=text, headers=headers, request=REQUEST)
    with pytest.raises(FalClientHTTPError) as raised:
        _raise_for_status(response)
    return raised.value


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused", request=REQUEST),
        httpx.ConnectTimeout("connect timed out", request=REQUEST),
        httpx.PoolTimeout("no free connection", request=REQUEST),
    ],
    ids=type,
)
def test_nothing_sent_is_safe_to_resend(error):
    assert submit_fault(error) == "not_created"


@pytest.mark.parametrize(
    ("code", "text", "headers"),
    [
        (429, '{"detail": "slow down"}', {"x-fal-request-id": "r1"}),
        (408, '{"detail": "request timeout"}', {}),
        (502, NGINX, {}),
        (503, NGINX, {}),
    ],
)
def test_refusals_by_fals_edge_are_safe_to_resend(code, text, headers):
    assert submit_fault(fal_error(code, text, **headers)) == "not_created"


@pytest.mark.parametrize(
    ("code", "text", "headers"),
    [
        (503, NGINX, {"x-fal-request-id": "r1"}),  # answered by fal's queue, not its edge
        (503, '{"detail": "runner", "error_type": "runner_connection_refused"}', {"x-fal-request-id": "r1"}),
        (502, "Bad Gateway", {}),  # no nginx signature: fal-client's _is_ingress_error does not vouch for it
        (504, '{"detail": "timeout"}', {"x-fal-request-id": "r1", "x-fal-request-timeout-type": "user"}),
        (409, '{"detail": "conflict"}', {}),
        (500, '{"detail": "Internal Server Error"}', {"x-fal-request-id": "r1"}),
        (401, '{"detail": "bad key"}', {}),
        (422, '{"detail": []}', {}),
    ],
)
def test_other_answers_are_not_resent(code, text, headers):
    assert submit_fault(fal_error(code, text, **headers)) == "refused"


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadError("connection reset", request=REQUEST),
        httpx.ReadTimeout("read timed out", request=REQUEST),
        httpx.WriteError("broken pipe", request=REQUEST),
        httpx.WriteTimeout("write timed out", request=REQUEST),
        httpx.RemoteProtocolError("Server disconnected without sending a response.", request=REQUEST),
        httpx.CloseError("close failed", request=REQUEST),
        httpx.DecodingError("garbled body", request=REQUEST),
    ],
    ids=type,
)
def test_lost_answers_are_never_resent(error):
    assert submit_fault(error) == "lost"


def test_an_edge_timeout_is_a_lost_answer():
    """nginx's 504 means it forwarded the POST and gave up waiting: the queue may have created the request."""
    error = fal_error(504, NGINX.replace("503 Service Temporarily Unavailable", "504 Gateway Time-out"))
    assert submit_fault(error) == "lost"


def test_local_failures_are_not_resent():
    assert submit_fault(ValueError("Priority must be one of ('normal', 'low')")) == "refused"
    assert submit_fault(httpx.UnsupportedProtocol("ftp", request=REQUEST)) == "refused"


def test_the_lost_answer_error_says_what_happened_and_what_to_do():
    error = outcome_unknown("fal-ai/sam-3/image", httpx.ReadError("connection reset"), "its answer was lost")
    assert isinstance(error, FalSubmitOutcomeUnknownError) and isinstance(error, FalTransientError)
    text = str(error)
    assert text.startswith(
        "fal-ai/sam-3/image: submit sent the request but its answer was lost (ReadError: connection reset)"
    )
    assert "fal may have created the request" in text and "not resubmitted automatically" in text
    assert "paying twice" in text and "dashboard" in text
    assert error.request_id is None and error.retryable is True


def Opts(webhook_url, priority, start_timeout, hint):
    """The older separate submit keywords, as ``FalHook.submit`` turns them into options."""
    return submit_options(None, webhook_url, priority, start_timeout, hint)


def test_submit_url_and_headers_are_fal_clients_on_the_connections_host(monkeypatch):
    import fal_client.client as fal_module

    monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", "https://another-connections-host/")  # never read
    host = "queue.example:8443"
    url, headers = submit_call(host, "fal-ai/sam-3/image", Opts("https://hooks.example/x?a=1", "low", 30, "gpu"))
    assert url == "https://queue.example:8443/fal-ai/sam-3/image?fal_webhook=https%3A%2F%2Fhooks.example%2Fx%3Fa%3D1"
    assert headers == {"X-Fal-Runner-Hint": "gpu", "X-Fal-Queue-Priority": "low", "X-Fal-Request-Timeout": "30.0"}
    bare = submit_call(host, "fal-ai/sam-3/image", Opts(None, None, None, None))
    assert bare == ("https://queue.example:8443/fal-ai/sam-3/image", {})
    with pytest.raises(ValueError, match="Priority"):
        submit_call(host, "fal-ai/sam-3/image", Opts(None, "urgent", None, None))
    with pytest.raises(ValueError, match="Timeout"):
        submit_call(host, "fal-ai/sam-3/image", Opts(None, None, 0.5, None))


def test_media_lifetime_and_request_history_headers_are_fals():
    from airflow_provider_sam3.models.submit_options import SubmitOptions

    url, headers = submit_call("q.example", "fal-ai/sam-3/image", SubmitOptions(media_expires_in=3600, store_io=False))
    assert headers == {
        "X-Fal-Object-Lifecycle-Preference": '{"expiration_duration_seconds": 3600}',
        "X-Fal-Store-IO": "0",
    }
    with pytest.raises(TypeError, match="not both"):
        submit_options(SubmitOptions(), None, "low", None, None)
