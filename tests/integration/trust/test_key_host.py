"""The fal key goes only to the connection's queue host, over https.

Attacks: a request reference (from XCom, a template or ``dag_run.conf``) or fal's own answer to a submit naming
another host, port or scheme, or disguising one (credentials in the URL, a trailing dot, an IPv6 or decimal
literal, an IDN look-alike, percent-encoding, a backslash, a header injection). Each is refused with a final
error naming the request, and a hostile server listening where the URL points sees no connection at all.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from hostile import submit_answer

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.fal import FalHook
from airflow_provider_sam3.hooks.trust import url_problem
from airflow_provider_sam3.models.reference import RequestReference

ENDPOINT = "fal-ai/sam-3/image"
APP = "fal-ai/sam-3"
RID = "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"


def reference(base: str, request_id: str = RID, **urls: str) -> RequestReference:
    root = f"{base}/{APP}/requests/{request_id}"
    return RequestReference(
        endpoint_id=ENDPOINT,
        request_id=request_id,
        **{"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel", **urls},
    )


def attacks(queue: str, evil: str) -> dict[str, str]:
    """Bases of URLs that must not receive the key when the queue host is ``queue`` (``evil`` listens)."""
    evil_port = evil.rsplit(":", 1)[1]
    queue_port = queue.rsplit(":", 1)[1]
    return {
        "other_port": f"https://{evil}",
        "plain_http_to_the_queue_host": f"http://{queue}",
        "userinfo_naming_the_queue_host": f"https://{queue}@{evil}",
        "userinfo_before_the_queue_host": f"https://{evil}@{queue}",
        "backslash_userinfo": f"https://{queue}\\@{evil}",
        "trailing_dot": f"https://localhost.:{evil_port}",
        "ipv6_loopback_literal": f"https://[::1]:{queue_port}",
        "ipv4_mapped_ipv6": f"https://[::ffff:127.0.0.1]:{evil_port}",
        "decimal_ip": f"https://2130706433:{evil_port}",
        "hex_ip": f"https://0x7f000001:{evil_port}",
        "idn_look_alike": f"https://queue.f\u0430l.run:{evil_port}",
        "percent_encoded_host": f"https://127.0.0.1%3a{evil_port}",
        "header_injection": f"https://{queue}/x\r\nHost: {evil}\r\n\r\nGET https://{evil}",
        "no_host": "https://",
        "scheme_relative": f"//{evil}",
        "other_scheme": f"ftp://{evil}",
        "fragment_hiding_the_path": f"https://{queue}/#@{evil}",
    }


def assert_refused(error: BaseException, evil, *, request_id: str | None = RID, key: str | None = None) -> None:
    assert isinstance(error, exc.FalUntrustedUrlError), f"{type(error).__name__}: {error}"
    if key is not None:
        assert key not in str(error) and key not in repr(error.args)
    assert error.retryable is False
    assert "the fal key was not sent" in str(error) or "nothing was sent" in str(error)
    if request_id is not None:
        assert request_id in str(error)
    assert evil.accepted == 0 and evil.requests == []


def test_unit_url_problem_accepts_only_the_queue_host():
    queue = "queue.fal.run"
    good = [
        "https://queue.fal.run/fal-ai/sam-3/requests/x/status",
        "https://QUEUE.fal.run/a",
        "https://queue.fal.run:443/a",
        "HTTPS://queue.fal.run/a?logs=1",
    ]
    assert [url_problem(url, queue) for url in good] == [None] * len(good)
    assert url_problem("https://xn--queue-fl-9ng.run/a", "xn--queue-fl-9ng.run") is None  # a punycode queue host
    assert url_problem("https://[::1]:8443/a", "[::1]:8443") is None  # an IPv6 queue host
    bad = [
        "http://queue.fal.run/a",
        "https://queue.fal.run.evil.com/a",
        "https://evil.com/queue.fal.run",
        "https://queue.fal.run:8443/a",
        "https://queue.fal.run./a",
        "https://u:p@queue.fal.run/a",
        "https://queue.fal.run@evil.com/a",
        "https://xn--queue-fal-run.evil/a",
        "https://queue.fal.run\t/a",
        "wss://queue.fal.run/a",
        "https://queue.fal.run:99999/a",
        "",
        None,
        42,
    ]
    for url in bad:
        assert url_problem(url, queue), url


@pytest.mark.parametrize("name", list(attacks("127.0.0.1:1", "127.0.0.1:2")))
@pytest.mark.parametrize("call", ["status", "result", "cancel", "astatus", "aresult", "acancel"])
def test_a_reference_elsewhere_never_receives_the_key(name, call, fal_emulator, connect, hostile):
    evil = hostile()
    base = attacks(fal_emulator.host, evil.host)[name]
    ref = reference(base)
    hook = FalHook()
    with pytest.raises(exc.Sam3ProviderError) as raised:
        if call.startswith("a"):

            async def go() -> Any:
                try:
                    return await getattr(hook, call)(ref)
                finally:
                    await hook.aclose()

            asyncio.run(go())
        else:
            getattr(hook, call)(ref)
    assert_refused(raised.value, evil, key=fal_emulator.api_key)
    counters = fal_emulator.counters()
    assert (counters["status_calls"], counters["result_calls"], counters["cancels"]["total"]) == (0, 0, 0)


def test_plain_http_to_the_configured_host_itself_is_refused(connect, hostile):
    """Even the right host and port are refused over http: the key would cross the network in clear text."""
    queue = hostile()
    connect(host=queue.host)
    with pytest.raises(exc.FalUntrustedUrlError) as raised:
        FalHook().status(reference(f"http://{queue.host}"))
    assert_refused(raised.value, queue)


def test_the_same_host_in_capitals_is_the_same_host(fal_emulator, connect):
    """Host names are case-insensitive: a reference in capitals reaches the configured host (and only it)."""
    fal_emulator.configure(service_time_s=0.0)
    ref = FalHook().submit(ENDPOINT, {"image_url": "https://media.example.com/a.png", "prompt": "x"})
    loud = RequestReference(**{**ref.to_dict(), "status_url": ref.status_url.replace("https://", "HTTPS://")})
    FalHook().status(loud)
    assert fal_emulator.counters()["status_calls"] == 1


@pytest.mark.parametrize("where", ["status_url", "response_url", "cancel_url"])
@pytest.mark.parametrize("mode", ["submit", "asubmit"])
def test_a_submit_answer_naming_another_host_is_refused(where, mode, connect, hostile, fal_emulator):
    """The queue host itself answers a submit with one URL on another host: nothing is sent there."""
    evil = hostile()

    def answer(method, path, server):
        urls = {
            name: f"{server.base_url}/{APP}/requests/{RID}/{name}"
            for name in ("status_url", "response_url", "cancel_url")
        }
        urls[where] = f"https://{evil.host}/{APP}/requests/{RID}/x"
        return submit_answer(RID, **urls)

    queue = hostile(answer)
    connect(host=queue.host)
    hook = FalHook()
    with pytest.raises(exc.FalUntrustedUrlError) as raised:
        if mode == "submit":
            hook.submit(ENDPOINT, {"image_url": "https://media.example.com/a.png", "prompt": "x"})
        else:

            async def go():
                try:
                    return await hook.asubmit(ENDPOINT, {"image_url": "https://media.example.com/a.png", "prompt": "x"})
                finally:
                    await hook.aclose()

            asyncio.run(go())
    assert_refused(raised.value, evil, key=fal_emulator.api_key)
    assert "may bill it" in str(raised.value) and where in str(raised.value)
    assert [seen.method for seen in queue.requests] == ["POST"]  # the submit only, to the configured host


def test_the_operator_fails_for_good_and_no_key_leaves(connect, hostile, photo):
    """End to end: a typed operator whose queue answers with a foreign status URL fails without a retry."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

    evil = hostile()
    queue = hostile(
        lambda method, path, server: submit_answer(
            RID, status_url=f"{evil.base_url}/s", response_url=f"{evil.base_url}/r", cancel_url=f"{evil.base_url}/c"
        )
    )
    connect(host=queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({})
    assert isinstance(raised.value.__cause__, exc.FalUntrustedUrlError)
    assert "not retried" in str(raised.value)
    assert evil.accepted == 0 and len(queue.requests) == 1


def test_sensor_reference_from_dag_run_conf_cannot_redirect_the_key(fal_emulator, connect, hostile):
    """``reference`` templated from the run's conf names another host: refused before any call, not retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_sam3.sensors.fal import FalRequestSensor

    evil = hostile()
    sensor = FalRequestSensor(task_id="wait", reference="{{ params.ref | tojson }}", poke_interval=0.2, timeout=5)
    context = {"params": {"ref": reference(evil.base_url).to_dict()}}
    sensor.render_template_fields(context)
    with pytest.raises(AirflowFailException) as raised:
        sensor.execute(context)
    cause = raised.value.__cause__
    assert isinstance(cause, exc.InputValidationError) and cause.field == "reference.status_url"
    assert "the fal key is sent only to the connection's queue host" in str(raised.value)
    assert evil.accepted == 0
    assert fal_emulator.counters()["status_calls"] == 0


def test_trigger_with_a_foreign_reference_fires_a_final_error(fal_emulator, connect, hostile):
    """A reference in trigger kwargs (e.g. edited in the database) is refused in the triggerer too."""
    import time

    from airflow_provider_sam3.operators.fetched_results import raise_for_event
    from airflow_provider_sam3.triggers.fal import FalRequestTrigger

    evil = hostile()
    trigger = FalRequestTrigger(
        reference=reference(evil.base_url).to_dict(), deadline=time.time() + 30, poll_interval=0.2
    )

    async def first():
        runner = trigger.run()
        try:
            return await asyncio.wait_for(runner.__anext__(), 20)
        finally:
            await runner.aclose()

    event = asyncio.run(first()).payload
    assert event["status"] == "error" and event["error_class"] == "FalUntrustedUrlError"
    assert event["retryable"] is False
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException):
        raise_for_event(json.loads(json.dumps(event)))
    assert evil.accepted == 0


def test_batch_references_built_from_templates_are_checked(fal_emulator, connect, hostile):
    """The batch rebuilds references from URL templates kept in its state: a template on another host (or an id
    that would change the URL's path) is refused by the hook's calls, for status and cancel alike."""
    from airflow_provider_sam3.batch.cancels import cancel_all
    from airflow_provider_sam3.batch.polling import reference_for

    evil = hostile()
    templates = {
        name: f"{evil.base_url}/{APP}/requests/{{request_id}}/{name}"
        for name in ("status_url", "response_url", "cancel_url")
    }
    good = {
        name: template.replace(evil.base_url, f"https://{fal_emulator.host}") for name, template in templates.items()
    }
    refs = [reference_for(str(uuid.uuid4()), ENDPOINT, templates) for _ in range(3)]
    refs.append(reference_for("../../../admin", ENDPOINT, good))

    async def go():
        hook = FalHook()
        try:
            statuses = await asyncio.gather(*(hook.astatus(ref) for ref in refs), return_exceptions=True)
            cancels = await cancel_all(hook, refs)
            return statuses, cancels
        finally:
            await hook.aclose()

    statuses, cancels = asyncio.run(go())
    assert all(isinstance(answer, exc.FalUntrustedUrlError) for answer in statuses), statuses
    assert all(outcome.startswith("cancel failed") for outcome in cancels.values())
    assert evil.accepted == 0
    counters = fal_emulator.counters()
    assert (counters["status_calls"], counters["cancels"]["total"]) == (0, 0)


def test_uploads_send_the_key_only_to_fal_storage_with_fal_queue_or_to_the_queue_host(
    fal_emulator, connect, hostile, monkeypatch
):
    """fal-client uploads to its module-wide REST_URL/CDN_URL with the key: allowed when those are the queue host
    (the emulator) or fal's own storage with fal's own queue; anything else is refused unsent."""
    import fal_client.client

    evil = hostile()
    monkeypatch.setattr(fal_client.client, "REST_URL", evil.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", evil.base_url)
    with pytest.raises(exc.FalUntrustedUrlError) as raised:
        FalHook().upload(b"\x89PNG", "image/png", "a.png")
    assert "upload refused" in str(raised.value) and evil.accepted == 0

    async def aupload():
        hook = FalHook()
        try:
            return await hook.aupload(b"\x89PNG", "image/png", "a.png")
        finally:
            await hook.aclose()

    with pytest.raises(exc.FalUntrustedUrlError):
        asyncio.run(aupload())
    assert evil.accepted == 0

    monkeypatch.setattr(fal_client.client, "REST_URL", fal_emulator.base_url)
    monkeypatch.setattr(fal_client.client, "CDN_URL", fal_emulator.base_url)
    assert FalHook().upload(b"\x89PNG", "image/png", "a.png").startswith(fal_emulator.base_url)


@pytest.mark.parametrize("call", ["status", "result", "cancel", "astatus", "submit"])
def test_the_queue_host_cannot_redirect_a_call_elsewhere(call, fal_emulator, connect, hostile):
    """fal-client's sync client follows redirects; the hook's queue calls do not: a 3xx from the queue host (or
    a proxy in front of it) sends nothing to the host it names, with or without the key."""
    evil = hostile()
    queue = hostile(lambda method, path, server: (307, {"Location": f"{evil.base_url}{path}"}, b""))
    connect(host=queue.host)
    hook = FalHook(retry_attempts=1)
    with pytest.raises(exc.Sam3ProviderError):
        if call == "submit":
            hook.submit(ENDPOINT, {"image_url": "https://media.example.com/a.png", "prompt": "x"})
        elif call == "astatus":

            async def go():
                try:
                    return await hook.astatus(reference(queue.base_url))
                finally:
                    await hook.aclose()

            asyncio.run(go())
        else:
            getattr(hook, call)(reference(queue.base_url))
    assert evil.accepted == 0 and len(queue.requests) >= 1
