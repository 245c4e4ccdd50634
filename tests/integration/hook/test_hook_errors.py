"""Every failure fal can answer, as the hook maps it: the exact provider error, its attributes, and who retried.

fal_client retries 429, nginx 502/503/504 and transport errors itself; the hook retries what fal_client does not
(``runner_*`` errors) and gives up with a ``retryable`` error. Counters on the emulator prove who retried what.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hook_helpers import ARGS, FLAT_URI, IMAGE_ENDPOINT, RLE_ENDPOINT, dead_port, reference_at, set_connection

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
        hook = FalHook(retry_attempts=3)
        try:
            return await make_coroutine(hook)
        finally:
            await hook.aclose()

    return asyncio.run(go())


def _faults(emulator) -> dict[str, int]:
    return emulator.counters()["faults"]["by_kind"]


# ---------------------------------------------------------------- keys


def test_wrong_key_is_an_authentication_error(fal_emulator, fal_conn, monkeypatch):
    good = FalHook()
    ref = good.submit(IMAGE_ENDPOINT, ARGS)
    set_connection(monkeypatch, conn_id="fal_wrong", password="not-the-key", host=fal_emulator.host)
    bad = FalHook("fal_wrong")

    error = _raises(exc.FalAuthenticationError, bad.submit, IMAGE_ENDPOINT, ARGS)
    assert error.status_code == 401 and error.retryable is False
    assert error.endpoint_id == IMAGE_ENDPOINT and error.request_id is None
    assert "API key" in str(error)

    error = _raises(exc.FalAuthenticationError, bad.status, ref)
    assert error.request_id == ref.request_id and error.status_code == 401
    counters = fal_emulator.counters()
    assert counters["submissions"]["total"] == 1  # only the good hook's request exists
    assert counters["status_calls"] == 1  # a 401 is not retried, by fal_client or the hook


def test_exhausted_key_is_a_balance_error(fal_emulator, fal_conn):
    fal_emulator.configure(exhausted_keys=["spent-key"])
    fal_conn(password="spent-key")
    error = _raises(exc.FalBalanceExhaustedError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    assert error.status_code == 403 and error.retryable is False
    assert "balance" in str(error).lower()
    assert fal_emulator.counters()["submissions"]["total"] == 0


def test_exhausted_key_async(fal_emulator, fal_conn):
    fal_emulator.configure(exhausted_keys=["spent-key"])
    fal_conn(password="spent-key")
    with pytest.raises(exc.FalBalanceExhaustedError):
        _arun(lambda hook: hook.asubmit(IMAGE_ENDPOINT, ARGS))


# ---------------------------------------------------------------- the app's answers


def test_invalid_input_is_refused_by_the_result_not_the_submit(fal_emulator, fal_conn):
    hook = FalHook()
    # A raw dict bypasses local validation on purpose: fal's app is the one refusing it.
    ref = hook.submit(IMAGE_ENDPOINT, {**ARGS, "max_masks": 40, "return_multiple_masks": True})
    assert fal_emulator.counters()["submissions"]["total"] == 1
    status = hook.wait(ref)
    assert status.done and "max_masks" in status.error

    error = _raises(exc.FalValidationError, hook.result, ref)
    assert error.status_code == 422 and error.retryable is False
    assert "max_masks" in str(error)
    assert [d["loc"] for d in error.details] == [["body", "max_masks"]]
    assert error.details[0]["type"] == "less_than_equal"
    assert error.request_id == ref.request_id and error.endpoint_id == IMAGE_ENDPOINT
    assert fal_emulator.counters()["result_calls"] == 1


def test_nothing_found_by_image_rle_is_no_masks(fal_emulator, fal_conn):
    hook = FalHook()
    ref = hook.submit(RLE_ENDPOINT, {"image_url": FLAT_URI, "prompt": "wheel"})
    hook.wait(ref)
    error = _raises(exc.FalNoMasksError, hook.result, ref)
    assert isinstance(error, exc.FalValidationError) and error.status_code == 422
    assert "No masks generated" in str(error) and "matched nothing" in str(error)


def test_result_before_completion_is_unavailable_not_missing(fal_emulator, fal_conn):
    fal_emulator.configure(service_time_s=3.0)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    error = _raises(exc.FalResultUnavailableError, hook.result, ref)
    assert error.status_code == 400 and error.retryable is False
    assert fal_emulator.counters()["result_calls"] == 1
    hook.cancel(ref)


def test_app_crash_is_an_app_error_and_the_status_says_so(fal_emulator, fal_conn):
    fal_emulator.add_fault("app_500", target="submit", first=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    status = hook.wait(ref)
    assert status.done and status.error and status.error_type == "internal_error"
    error = _raises(exc.FalAppError, hook.result, ref)
    assert error.status_code == 500 and error.retryable is False
    assert fal_emulator.counters()["result_calls"] == 1


def test_start_deadline_is_a_start_timeout_and_the_result_is_not_polled_again(fal_emulator, fal_conn):
    fal_emulator.configure(concurrency=1, service_time_s=3.0)
    hook = FalHook()
    blocker = hook.submit(IMAGE_ENDPOINT, ARGS)
    late = hook.submit(IMAGE_ENDPOINT, ARGS, start_timeout=1.5)  # fal_client refuses <= 1 s
    status = hook.wait(late)
    assert status.done and status.error and status.error_type == "request_timeout"
    error = _raises(exc.FalStartTimeoutError, hook.result, late)
    assert error.status_code == 504 and error.request_id == late.request_id
    assert error.retryable is True  # resubmitting may succeed ...
    # ... but fetching this request's result again cannot: one call, no backoff.
    assert fal_emulator.counters()["result_calls"] == 1
    assert hook.cancel(blocker) == "CANCELLATION_REQUESTED"


# ---------------------------------------------------------------- unknown, vanished, expired


def test_unknown_request_is_not_found(fal_emulator, fal_conn):
    hook = FalHook()
    ref = reference_at(fal_emulator.host, request_id=str(uuid.uuid4()))
    for call in (hook.status, hook.result):
        error = _raises(exc.FalRequestNotFoundError, call, ref)
        assert error.status_code == 404 and error.retryable is False and error.request_id == ref.request_id
    counters = fal_emulator.counters()
    assert (counters["status_calls"], counters["result_calls"]) == (1, 1)


def test_unknown_request_is_not_found_async(fal_emulator, fal_conn):
    ref = reference_at(fal_emulator.host, request_id=str(uuid.uuid4()))
    with pytest.raises(exc.FalRequestNotFoundError):
        _arun(lambda hook: hook.astatus(ref))


def test_vanished_request_is_not_found(fal_emulator, fal_conn):
    fal_emulator.add_fault("vanish", target="status", first=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    error = _raises(exc.FalRequestNotFoundError, hook.status, ref)
    assert "vanished" in str(error)
    _raises(exc.FalRequestNotFoundError, hook.result, ref)
    assert _faults(fal_emulator) == {"vanish": 1}


def test_expired_result_is_not_found(fal_emulator, fal_conn):
    fal_emulator.add_fault("expire_early", target="submit", first=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert hook.wait(ref).error is None
    error = _raises(exc.FalRequestNotFoundError, hook.result, ref)
    assert "expired" in str(error)


# ---------------------------------------------------------------- rate limits and gateway errors


def test_short_429_burst_is_absorbed_by_fal_client(fal_emulator, fal_conn):
    fal_emulator.add_fault("rate_limit_429", target="status", first=2)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert hook.status(ref).state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert _faults(fal_emulator) == {"rate_limit_429": 2}
    assert fal_emulator.counters()["status_calls"] == 3


def test_429_storm_gives_up_with_a_retryable_rate_limit_error(fal_emulator, fal_conn, fast_retries, few_fal_attempts):
    hook = FalHook(retry_attempts=2)
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("rate_limit_429", target="status", rate=1.0)
    error = _raises(exc.FalRateLimitedError, hook.status, ref)
    assert error.retryable is True and error.status_code == 429 and error.request_id == ref.request_id
    # fal_client's 2 attempts; the hook does not multiply them with its own.
    assert fal_emulator.counters()["status_calls"] == 2


def test_429_storm_async(fal_emulator, fal_conn, fast_retries, few_fal_attempts):
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("rate_limit_429", target="status", rate=1.0)
    with pytest.raises(exc.FalRateLimitedError) as raised:
        _arun(lambda hook: hook.astatus(ref))
    assert raised.value.retryable is True
    assert fal_emulator.counters()["status_calls"] == 2  # fal_client's attempts only


@pytest.mark.parametrize("kind", ["nginx_502", "nginx_503", "nginx_504"])
def test_gateway_errors_are_retried_by_fal_client(fal_emulator, fal_conn, kind):
    fal_emulator.add_fault(kind, target="status", first=2)
    fal_emulator.add_fault(kind, target="result", first=2)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(ref)
    assert hook.result(ref)["masks"]
    assert _faults(fal_emulator) == {kind: 4}
    assert fal_emulator.counters()["result_calls"] == 3


def test_gateway_outage_gives_up_with_a_transient_error(fal_emulator, fal_conn, fast_retries, few_fal_attempts):
    hook = FalHook(retry_attempts=2)
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("nginx_502", target="status", rate=1.0)
    error = _raises(exc.FalTransientError, hook.status, ref)
    assert error.retryable is True and error.status_code == 502 and "gateway" in str(error)
    assert fal_emulator.counters()["status_calls"] == 2  # fal_client's attempts only


def test_wait_polls_again_after_a_poll_that_failed_after_fal_clients_retries(
    fal_emulator, fal_conn, fast_retries, few_fal_attempts, capfd
):
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("nginx_502", target="status", first=3)  # poll 1 fails twice; poll 2 fails once, then works
    assert hook.wait(ref).done
    assert _faults(fal_emulator) == {"nginx_502": 3}
    out, err = capfd.readouterr()
    assert "polling again (1 of 5 polls in a row failed)" in out + err


# ---------------------------------------------------------------- runner errors: the hook's own retries


def test_runner_503_once_is_retried_by_the_hook(fal_emulator, fal_conn, fast_retries):
    fal_emulator.add_fault("runner_503", target="result", first=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(ref)
    assert hook.result(ref)["masks"]
    assert fal_emulator.counters()["result_calls"] == 2  # fal_client does not retry it; the hook did, once
    assert _faults(fal_emulator) == {"runner_503": 1}


def test_runner_503_once_is_retried_by_the_async_hook(fal_emulator, fal_conn, fast_retries):
    fal_emulator.add_fault("runner_503", target="result", first=1)
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS)
    FalHook().wait(ref)
    assert _arun(lambda hook: hook.aresult(ref))["masks"]
    assert fal_emulator.counters()["result_calls"] == 2


def test_runner_503_always_gives_up_with_a_transient_error(fal_emulator, fal_conn, fast_retries):
    fal_emulator.add_fault("runner_503", target="result", rate=1.0)
    hook = FalHook(retry_attempts=3)
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(ref)
    error = _raises(exc.FalTransientError, hook.result, ref)
    assert error.retryable is True and error.status_code == 503
    assert error.error_type == "runner_connection_refused" and "runner" in str(error)
    assert fal_emulator.counters()["result_calls"] == 3


# ---------------------------------------------------------------- the network itself


def test_dropped_connection_once_is_retried_by_fal_client(fal_emulator, fal_conn):
    fal_emulator.add_fault("drop_connection", target="status", first=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    assert hook.status(ref).state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert _faults(fal_emulator) == {"drop_connection": 1}
    assert fal_emulator.counters()["status_calls"] == 2


def test_dropped_connections_give_up_with_a_transient_error(fal_emulator, fal_conn, fast_retries, few_fal_attempts):
    hook = FalHook(retry_attempts=2)
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("drop_connection", target="status", rate=1.0)
    error = _raises(exc.FalTransientError, hook.status, ref)
    assert error.retryable is True and error.status_code is None
    assert fal_emulator.counters()["status_calls"] == 2  # fal_client's attempts only


def test_slow_status_beyond_request_timeout_is_retried_and_succeeds(fal_emulator, fal_conn):
    """The connection's request_timeout bounds each queue call: the slow one times out and fal_client retries."""
    fal_conn(request_timeout=1)
    hook = FalHook()
    ref = hook.submit(IMAGE_ENDPOINT, ARGS)
    fal_emulator.add_fault("slow_response", target="status", first=1, delay_s=3.0)
    status = hook.status(ref)
    assert status.state in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    # Two calls: without the 1 s request_timeout the first would simply have answered after 3 s.
    assert fal_emulator.counters()["status_calls"] == 2
    assert _faults(fal_emulator) == {"slow_response": 1}


def test_slow_result_beyond_request_timeout_async(fal_emulator, fal_conn):
    fal_conn(request_timeout=1)
    ref = FalHook().submit(IMAGE_ENDPOINT, ARGS)
    FalHook().wait(ref)
    fal_emulator.add_fault("slow_response", target="result", first=1, delay_s=3.0)
    assert _arun(lambda hook: hook.aresult(ref))["masks"]
    assert fal_emulator.counters()["result_calls"] == 2  # the slow one timed out after 1 s and was asked again


def test_unreachable_host_is_a_transient_error_naming_the_host_problem(
    fal_emulator, fal_conn, fast_retries, few_fal_attempts
):
    host = f"127.0.0.1:{dead_port()}"
    fal_conn(host=host)  # the connection's own queue host is down (a reference elsewhere is refused unsent)
    hook = FalHook(retry_attempts=2)
    ref = reference_at(host)
    error = _raises(exc.FalTransientError, hook.status, ref)
    assert error.retryable is True and error.request_id == ref.request_id
    assert f"lost its connection to fal's queue at {host}" in str(error) and "ConnectError" in str(error)
    assert "queue host" in str(error)


def test_unreachable_host_async(fal_emulator, fal_conn, fast_retries, few_fal_attempts):
    host = f"127.0.0.1:{dead_port()}"
    fal_conn(host=host)
    ref = reference_at(host)
    with pytest.raises(exc.FalTransientError) as raised:
        _arun(lambda hook: hook.astatus(ref))
    assert f"lost its connection to fal's queue at {host}" in str(raised.value)
