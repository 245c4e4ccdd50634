"""The API key never leaves the Authorization header: not in errors (nor their causes), logs or references."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

import pytest
from hook_helpers import ARGS, FLAT_URI, IMAGE_ENDPOINT, RLE_ENDPOINT, dead_port, reference_at, set_connection

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.endpoints import get_endpoint
from airflow_provider_sam3.hooks.fal import FalHook

SENTINEL = "sk-sentinel-4b1d93:f00dfacecafe5ecret"
SECRET_PARTS = (SENTINEL, SENTINEL.split(":")[1])
LOGGERS = (
    "",
    "airflow",
    "airflow.task",
    "fal_client",
    "httpx",
    "httpcore",
    "airflow.task.hooks.airflow_provider_sam3.hooks.fal.FalHook",
)


def _texts_of(error: BaseException) -> list[str]:
    """str and repr of an error and of everything chained to it."""
    texts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error), repr(error.args)]
        if isinstance(error, exc.FalValidationError):
            texts.append(repr(error.details))
        error = error.__cause__ or error.__context__
    return texts


class Run:
    """Runs failure paths, recording what each raised (and that it raised what was expected)."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.messages: list[str] = []

    def expect(self, cls: type[BaseException], call, *args, **kwargs) -> None:
        with pytest.raises(cls) as raised:
            call(*args, **kwargs)
        self.errors.append(raised.value)

    def aexpect(self, cls: type[BaseException], make_coroutine) -> None:
        async def go():
            hook = FalHook(retry_attempts=2)
            try:
                return await make_coroutine(hook)
            finally:
                await hook.aclose()

        self.expect(cls, asyncio.run, go())


def test_the_key_appears_in_no_error_log_or_reference(
    fal_emulator, monkeypatch, caplog, capfd, fast_retries, few_fal_attempts
):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    fal_emulator.configure(api_key=SENTINEL)
    monkeypatch.setenv("FAL_KEY", SENTINEL)
    set_connection(monkeypatch, password=SENTINEL, host=fal_emulator.host, poll_interval=0.2)
    run = Run()
    hook = FalHook(retry_attempts=2)
    references = []

    # success, sync and async
    ref = hook.submit(IMAGE_ENDPOINT, ARGS, priority="low", hint="h", webhook_url="https://hooks.example.invalid/x")
    references.append(ref)
    assert hook.wait(ref).error is None
    output = get_endpoint(IMAGE_ENDPOINT).parse_output(hook.result(ref))
    assert hook.download(output.masks[0].url)
    assert hook.cancel(ref) == "ALREADY_COMPLETED"
    run.messages.append(hook.test_connection()[1])

    async def async_cycle():
        ahook = FalHook()
        try:
            aref = await ahook.asubmit(IMAGE_ENDPOINT, ARGS)
            while not (await ahook.astatus(aref, with_logs=True)).done:
                await asyncio.sleep(0.05)
            await ahook.aresult(aref)
            await ahook.acancel(aref)
            return aref
        finally:
            await ahook.aclose()

    references.append(asyncio.run(async_cycle()))

    # wrong key (the sentinel is sent, another key is expected) and exhausted key (the sentinel is locked)
    fal_emulator.configure(api_key="some-other-key")
    run.expect(exc.FalAuthenticationError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    run.expect(exc.FalAuthenticationError, FalHook().status, ref)
    run.aexpect(exc.FalAuthenticationError, lambda h: h.asubmit(IMAGE_ENDPOINT, ARGS))
    run.messages.append(FalHook().test_connection()[1])
    fal_emulator.configure(api_key=SENTINEL, exhausted_keys=[SENTINEL])
    run.expect(exc.FalBalanceExhaustedError, FalHook().submit, IMAGE_ENDPOINT, ARGS)
    run.messages.append(FalHook().test_connection()[1])
    fal_emulator.configure(exhausted_keys=[])

    # the app's answers
    bad = hook.submit(IMAGE_ENDPOINT, {**ARGS, "max_masks": 40})
    references.append(bad)
    hook.wait(bad)
    run.expect(exc.FalValidationError, hook.result, bad)
    empty = hook.submit(RLE_ENDPOINT, {"image_url": FLAT_URI, "prompt": "wheel"})
    hook.wait(empty)
    run.expect(exc.FalNoMasksError, hook.result, empty)
    run.expect(exc.FalRequestError, hook.submit, IMAGE_ENDPOINT, ARGS, start_timeout=0.5)  # refused by fal_client
    fal_emulator.add_fault("app_500", target="submit", first=1)
    crashed = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(crashed)
    run.expect(exc.FalAppError, hook.result, crashed)
    run.aexpect(exc.FalAppError, lambda h: h.aresult(crashed))

    # not found: unknown, vanished, expired
    unknown = reference_at(fal_emulator.host, request_id=str(uuid.uuid4()))
    run.expect(exc.FalRequestNotFoundError, hook.status, unknown)
    run.expect(exc.FalRequestNotFoundError, hook.result, unknown)
    run.messages.append(hook.cancel(unknown))
    fal_emulator.add_fault("vanish", target="status", first=1)
    run.expect(exc.FalRequestNotFoundError, hook.status, hook.submit(IMAGE_ENDPOINT, ARGS))
    fal_emulator.add_fault("expire_early", target="submit", first=1)
    expired = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(expired)
    run.expect(exc.FalRequestNotFoundError, hook.result, expired)

    # start deadline, and a result asked for too early
    fal_emulator.configure(concurrency=1, service_time_s=2.0)
    blocker = hook.submit(IMAGE_ENDPOINT, ARGS)
    run.expect(exc.FalResultUnavailableError, hook.result, blocker)
    late = hook.submit(IMAGE_ENDPOINT, ARGS, start_timeout=1.1)
    hook.wait(late)
    run.expect(exc.FalStartTimeoutError, hook.result, late)
    run.messages.append(hook.cancel(blocker))
    fal_emulator.configure(concurrency=2, service_time_s=0.05)

    # edge and runner faults on every call, dropped connections, a slow response
    done = hook.submit(IMAGE_ENDPOINT, ARGS)
    hook.wait(done)
    for kind, cls in [
        ("rate_limit_429", exc.FalRateLimitedError),
        ("nginx_502", exc.FalTransientError),
        ("runner_503", exc.FalTransientError),
        ("drop_connection", exc.FalTransientError),
    ]:
        fal_emulator.configure(faults=[])
        fal_emulator.add_fault(kind, target="any", rate=1.0)
        run.expect(cls, hook.status, done)
        run.expect(cls, hook.result, done)
        run.expect(cls, hook.cancel, done)
        run.aexpect(cls, lambda h: h.astatus(done))
        if kind != "drop_connection":  # a dropped submit is replayed by fal_client: it may bill twice, so skip
            run.expect(cls, hook.submit, IMAGE_ENDPOINT, ARGS)
    fal_emulator.configure(faults=[])
    fal_emulator.add_fault("slow_response", target="status", first=1, delay_s=1.5)
    set_connection(monkeypatch, conn_id="fal_impatient", password=SENTINEL, host=fal_emulator.host, request_timeout=1)
    assert FalHook("fal_impatient").status(done).done

    # nothing listening
    dead = f"127.0.0.1:{dead_port()}"
    run.expect(exc.FalUntrustedUrlError, hook.status, reference_at(dead))  # not the queue host: refused unsent
    run.aexpect(exc.FalUntrustedUrlError, lambda h: h.aresult(reference_at(dead)))
    set_connection(monkeypatch, conn_id="fal_nowhere", password=SENTINEL, host=dead)
    run.expect(exc.FalTransientError, FalHook("fal_nowhere", retry_attempts=2).status, reference_at(dead))
    run.messages.append(FalHook("fal_nowhere").test_connection()[1])
    run.expect(exc.FalTransientError, FalHook("fal_nowhere").submit, IMAGE_ENDPOINT, ARGS)

    # a pasted key: the line break around it is dropped; one inside it cannot go in a header, and is refused
    set_connection(monkeypatch, conn_id="fal_pasted", password=f" {SENTINEL}\n", host=fal_emulator.host)
    references.append(FalHook("fal_pasted").submit(IMAGE_ENDPOINT, ARGS))
    broken = SENTINEL.replace(":", ":\n")
    set_connection(monkeypatch, conn_id="fal_broken", password=broken, host=fal_emulator.host)
    run.expect(exc.FalAuthenticationError, FalHook("fal_broken").submit, IMAGE_ENDPOINT, ARGS)
    run.aexpect(exc.FalAuthenticationError, lambda h: FalHook("fal_broken").asubmit(IMAGE_ENDPOINT, ARGS))
    connected, answer = FalHook("fal_broken").test_connection()
    assert not connected and "line breaks" in answer
    run.messages.append(answer)

    # ---- the checks
    assert len(run.errors) >= 30
    texts = [t for error in run.errors for t in _texts_of(error)] + run.messages
    texts += [repr(hook.get_settings()), str(hook.get_settings())]
    texts += [json.dumps(r.to_dict()) for r in references] + [repr(r) for r in references]
    for part in SECRET_PARTS:
        leaks = [t for t in texts if part in t]
        assert not leaks, leaks[:3]

    records = caplog.records
    assert any(r.name.startswith("httpx") for r in records), "httpx's request log was not captured"
    assert any(r.name.startswith("fal_client") for r in records), "fal_client's retry log was not captured"
    logged = [r.getMessage() for r in records] + [caplog.text]
    logged += [repr(r.args) for r in records] + [str(r.__dict__) for r in records]
    out, err = capfd.readouterr()  # the hook logs through structlog, printed rather than sent to caplog
    logged += [out, err]
    assert "retrying" in caplog.text + out + err, "the hook's retry warnings were not captured"
    for part in SECRET_PARTS:
        leaks = [t for t in logged if part in t]
        assert not leaks, [t[max(0, t.find(part) - 200) : t.find(part) + 50] for t in leaks[:3]]
