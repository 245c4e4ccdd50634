"""A submit is resent only when fal certainly created nothing, so one submit never pays twice.

fal-client resends a submit POST on any transport error or timeout, even when fal created the request and only its
answer was lost: a second paid request, the first orphaned. The hook sends the POST itself, one attempt at a time:
it resends after a refusal by fal's edge (429, nginx 502/503/504 without ``x-fal-request-id``) or when no connection
was made, and raises ``FalSubmitOutcomeUnknownError`` when the body may have reached fal. The emulator's counters
(requests created, faults fired) prove how many POSTs were sent and how many requests exist.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hook_helpers import ARGS, IMAGE_ENDPOINT, dead_port

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.fal import FalHook


def _raises(cls: type[BaseException], call, *args, **kwargs) -> BaseException:
    """Run ``call`` and return what it raised, which must be exactly ``cls`` (not a sibling or subclass)."""
    with pytest.raises(exc.Sam3ProviderError) as raised:
        call(*args, **kwargs)
    assert type(raised.value) is cls, f"{type(raised.value).__name__}: {raised.value}"
    return raised.value


def _arun(make_coroutine):
    """Run one coroutine with a fresh async hook, closing it afterwards."""

    async def go():
        hook = FalHook()
        try:
            return await make_coroutine(hook)
        finally:
            await hook.aclose()

    return asyncio.run(go())


def _araises(cls: type[BaseException], make_coroutine) -> BaseException:
    with pytest.raises(exc.Sam3ProviderError) as raised:
        _arun(make_coroutine)
    assert type(raised.value) is cls, f"{type(raised.value).__name__}: {raised.value}"
    return raised.value


def _log(capfd) -> str:
    """What the hook logged (Airflow's task logging writes to the process's stdout/stderr)."""
    out, err = capfd.readouterr()
    return out + err


def _created(emulator) -> int:
    return emulator.counters()["submissions"]["total"]


def _faults(emulator) -> dict[str, int]:
    return emulator.counters()["faults"]["by_kind"]


def _assert_says_what_to_do(error: BaseException) -> None:
    text = str(error)
    assert text.startswith(f"{IMAGE_ENDPOINT}: submit sent the request but"), text
    assert "fal may have created the request" in text and "will bill it" in text
    assert "not resubmitted automatically, to avoid paying twice" in text
    assert "fal's dashboard" in text and "a retry of the task submits a new request" in text
    assert error.retryable is True and error.request_id is None and error.endpoint_id == IMAGE_ENDPOINT
    assert isinstance(error, exc.FalTransientError)  # callers that handle transient faults still catch it


# ---------------------------------------------------------------- refused by fal's edge: resent, one request


def test_429_on_submit_is_resent_and_creates_one_request(fal_emulator, fal_conn):
    fal_emulator.add_fault("rate_limit_429", target="submit", first=3)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert _faults(fal_emulator) == {"rate_limit_429": 3}  # 4 POSTs: 3 refused, 1 accepted
    assert _created(fal_emulator) == 1
    [record] = fal_emulator.requests()
    assert record["request_id"] == ref.request_id
    assert hook.wait(ref).error is None and hook.result(ref)["masks"]


@pytest.mark.parametrize("kind", ["nginx_502", "nginx_503"])
def test_gateway_error_on_submit_is_resent_and_creates_one_request(fal_emulator, fal_conn, kind):
    fal_emulator.add_fault(kind, target="submit", first=2)
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS)
    assert _faults(fal_emulator) == {kind: 2}
    assert _created(fal_emulator) == 1
    assert [r["request_id"] for r in fal_emulator.requests()] == [ref.request_id]


def test_gateway_timeout_on_submit_is_not_resent(fal_emulator, fal_conn):
    """nginx's 504 comes after it forwarded the POST: the queue may have created the request, so no resend."""
    fal_emulator.add_fault("nginx_504", target="submit", first=1)
    error = _raises(exc.FalSubmitOutcomeUnknownError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    assert "fal's edge gave up waiting for the queue's answer (HTTP 504)" in str(error)
    assert "not resubmitted automatically" in str(error)
    assert _faults(fal_emulator) == {"nginx_504": 1}  # one POST, not resent


def test_resends_are_logged_with_their_reason(fal_emulator, fal_conn, capfd):
    fal_emulator.add_fault("nginx_503", target="submit", first=1)
    FalHook().submit(IMAGE_ENDPOINT, ARGS)
    resends = [line for line in _log(capfd).splitlines() if "sending it again" in line]
    assert len(resends) == 1 and "HTTP 503" in resends[0] and "fal created nothing" in resends[0], resends


def test_429_storm_on_submit_gives_up_after_fal_clients_attempts(fal_emulator, fal_conn, few_fal_attempts):
    fal_emulator.add_fault("rate_limit_429", target="submit", rate=1.0)
    error = _raises(exc.FalRateLimitedError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    assert error.retryable is True and error.status_code == 429
    assert _faults(fal_emulator) == {"rate_limit_429": 2}  # fal_client's MAX_ATTEMPTS (cut to 2) bounds resends
    assert _created(fal_emulator) == 0


def test_runner_error_on_submit_carries_a_request_id_and_is_not_resent(fal_emulator, fal_conn):
    fal_emulator.add_fault("runner_503", target="submit", first=1)
    error = _raises(exc.FalTransientError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    assert error.status_code == 503 and "runner" in str(error)
    assert _faults(fal_emulator) == {"runner_503": 1}  # one POST: fal's queue answered it, not its edge


def test_unreachable_queue_is_resent_then_a_transient_error(fal_emulator, fal_conn, few_fal_attempts, capfd):
    """No connection, nothing sent: resending is safe (fal_client's attempts, then a plain transient error)."""
    host = f"127.0.0.1:{dead_port()}"
    fal_conn(host=host)
    error = _raises(exc.FalTransientError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    assert f"lost its connection to fal's queue at {host}" in str(error) and "ConnectError" in str(error)
    assert _log(capfd).count("sending it again") == 1  # 2 attempts (fal_client's MAX_ATTEMPTS, cut to 2)


# ---------------------------------------------------------------- the answer is lost: not resent


def test_dropped_answer_to_a_submit_is_not_resent(fal_emulator, fal_conn):
    fal_emulator.add_fault("drop_connection", target="submit", first=1)
    error = _raises(exc.FalSubmitOutcomeUnknownError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    _assert_says_what_to_do(error)
    assert "its answer was lost" in str(error)
    assert "RemoteProtocolError" in str(error) or "ReadError" in str(error), str(error)
    # fal created the request whose answer was lost; the hook did not create a second one.
    assert _faults(fal_emulator) == {"drop_connection": 1}
    assert _created(fal_emulator) == 1


def test_a_submit_whose_answer_timed_out_is_not_resent(fal_emulator, fal_conn):
    """The body was sent, then the answer did not come within request_timeout: fal may have the request."""
    fal_conn(request_timeout=1)
    fal_emulator.add_fault("slow_response", target="submit", first=1, delay_s=2.0)
    error = _raises(exc.FalSubmitOutcomeUnknownError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    _assert_says_what_to_do(error)
    assert "ReadTimeout" in str(error)
    time.sleep(1.5)  # past the emulator's delay: a resent POST would have created a request by now
    assert _faults(fal_emulator) == {"slow_response": 1}
    assert _created(fal_emulator) == 0  # the emulator drops a submit whose client left; nothing was resent


def test_the_next_submit_after_a_lost_answer_works(fal_emulator, fal_conn):
    fal_emulator.add_fault("drop_connection", target="submit", first=1)
    hook = FalHook()
    _raises(exc.FalSubmitOutcomeUnknownError, hook.submit, IMAGE_ENDPOINT, ARGS)
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)  # the caller's choice: a second, deliberate request
    assert _created(fal_emulator) == 2 and hook.wait(ref).error is None


# ---------------------------------------------------------------- the async twin (triggerer, batch operator)


def test_async_429_and_gateway_errors_on_submit_are_resent_once_each(fal_emulator, fal_conn):
    fal_emulator.add_fault("rate_limit_429", target="submit", first=1)
    fal_emulator.add_fault("nginx_503", target="submit", first=1)
    ref = _arun(lambda hook: hook.asubmit(IMAGE_ENDPOINT, ARGS))
    assert _faults(fal_emulator) == {"rate_limit_429": 1, "nginx_503": 1}
    assert [r["request_id"] for r in fal_emulator.requests()] == [ref.request_id]


def test_async_dropped_answer_to_a_submit_is_not_resent(fal_emulator, fal_conn):
    fal_emulator.add_fault("drop_connection", target="submit", first=1)
    error = _araises(exc.FalSubmitOutcomeUnknownError, lambda hook: hook.asubmit(IMAGE_ENDPOINT, ARGS))
    _assert_says_what_to_do(error)
    assert _faults(fal_emulator) == {"drop_connection": 1}
    assert _created(fal_emulator) == 1


def test_async_submit_whose_answer_timed_out_is_not_resent(fal_emulator, fal_conn):
    fal_conn(request_timeout=1)
    fal_emulator.add_fault("slow_response", target="submit", first=1, delay_s=2.0)
    error = _araises(exc.FalSubmitOutcomeUnknownError, lambda hook: hook.asubmit(IMAGE_ENDPOINT, ARGS))
    _assert_says_what_to_do(error)
    assert "ReadTimeout" in str(error)
    time.sleep(1.5)  # past the emulator's delay
    assert _faults(fal_emulator) == {"slow_response": 1} and _created(fal_emulator) == 0


def test_async_unreachable_queue_is_a_transient_error(fal_emulator, fal_conn, few_fal_attempts):
    host = f"127.0.0.1:{dead_port()}"
    fal_conn(host=host)
    error = _araises(exc.FalTransientError, lambda hook: hook.asubmit(IMAGE_ENDPOINT, ARGS))
    assert f"lost its connection to fal's queue at {host}" in str(error)
