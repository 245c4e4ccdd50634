"""Output files are fetched safely: https (or data URIs) only, no private or loopback address unless it is the queue
host or an allowed media host, redirects checked again, a size cap, fixed extensions, and truthful final errors.

The hostile servers here are on 127.0.0.1, a loopback address: they are refused unless the connection lists them
in ``media_hosts``, which the positive controls do. URLs naming private or link-local addresses are refused
before any connection, so no test sends traffic anywhere but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.hooks.fal import FalHook

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def serve(body: bytes = PNG, content_type: str = "image/png", **headers: str):
    return lambda method, path, server: (200, {"Content-Type": content_type, **headers}, body)


def redirect(to: str, code: int = 302):
    return lambda method, path, server: (code, {"Location": to}, b"")


def refused(call, *args) -> exc.FalOutputRefusedError:
    with pytest.raises(exc.FalOutputRefusedError) as raised:
        call(*args)
    error = raised.value
    assert error.retryable is False
    assert "lost its connection" not in str(error) and "was not fetched" in str(error)
    return error


def adownload(url: str) -> bytes:
    async def go():
        hook = FalHook()
        try:
            return await hook.adownload(url)
        finally:
            await hook.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("file:///etc/passwd", "file://"),
        ("http://media.example.com/mask.png", "http://"),
        ("ftp://media.example.com/mask.png", "ftp://"),
        ("gopher://127.0.0.1:70/x", "gopher://"),
        ("https://user:secret@media.example.com/mask.png", "credentials"),
        ("https://media.example.com\\@127.0.0.1/mask.png", "backslashes"),
        ("https://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("https://[fe80::1]/x", "link-local"),
        ("https://10.1.2.3/x", "private"),
        ("https://192.168.0.10/x", "private"),
        ("https://172.16.5.4/x", "private"),
        ("https://100.64.0.1/x", "private or reserved"),
        ("https://0.0.0.0/x", "private or reserved"),
        ("https://224.0.0.1/x", "private or reserved"),
        ("https://[fd00::1]/x", "private"),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_unsafe_urls_are_refused_before_any_connection(url, says, mode, connect):
    error = refused(FalHook().download if mode == "sync" else adownload, url)
    assert says in str(error)
    assert "secret" not in str(error)


@pytest.mark.parametrize(
    "spelling",
    ["localhost", "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::1]", "[::ffff:127.0.0.1]"],
)
def test_loopback_in_any_spelling_is_refused(spelling, connect, hostile):
    media = hostile(serve())
    url = f"https://{spelling}:{media.port}/media/mask.png"
    error = refused(FalHook().download, url)
    assert "loopback" in str(error) or "not a host name" in str(error)
    assert media.accepted == 0


def test_an_allowed_media_host_is_fetched_without_the_key(connect, hostile, fal_emulator):
    media = hostile(serve())
    connect(media_hosts=[media.host])
    assert FalHook().download(f"{media.base_url}/media/mask.png") == PNG
    assert adownload(f"{media.base_url}/media/mask.png") == PNG
    assert len(media.requests) == 2 and not media.saw_key(fal_emulator.api_key)
    assert all("authorization" not in {k.lower() for k in seen.headers} for seen in media.requests)


def test_the_queue_host_serves_its_own_media(connect, fal_emulator):
    """The emulator serves outputs on the queue host (loopback): that host is trusted, and only it."""
    url = fal_emulator.host_file(PNG, "mask.png", "image/png")
    assert FalHook().download(url) == PNG


@pytest.mark.parametrize("target", ["loopback_elsewhere", "plain_http", "file", "metadata", "userinfo"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redirects_are_checked_again(target, mode, connect, hostile):
    inner = hostile(serve())
    to = {
        "loopback_elsewhere": f"{inner.base_url}/secret",
        "plain_http": f"http://{inner.host}/secret",
        "file": "file:///etc/passwd",
        "metadata": "https://169.254.169.254/latest/meta-data/",
        "userinfo": f"https://x@{inner.host}/secret",
    }[target]
    outer = hostile(redirect(to))
    connect(media_hosts=[outer.host])
    refused(FalHook().download if mode == "sync" else adownload, f"{outer.base_url}/mask.png")
    assert inner.accepted == 0
    assert len(outer.requests) == 1


def test_a_relative_redirect_on_an_allowed_host_is_followed(connect, hostile):
    def answer(method, path, server):
        return (302, {"Location": "/final.png"}, b"") if path == "/start" else serve()(method, path, server)

    media = hostile(answer)
    connect(media_hosts=[media.host])
    assert FalHook().download(f"{media.base_url}/start") == PNG
    assert [seen.path for seen in media.requests] == ["/start", "/final.png"]


def test_redirect_loops_stop(connect, hostile):
    media = hostile(lambda method, path, server: (302, {"Location": f"{server.base_url}/again"}, b""))
    connect(media_hosts=[media.host])
    error = refused(FalHook().download, f"{media.base_url}/start")
    assert "redirected more than 5 times" in str(error)
    assert len(media.requests) == 6


@pytest.mark.parametrize("declared", [True, False])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_outputs_above_the_size_cap_are_refused(declared, mode, connect, hostile):
    body = b"\x00" * 50_000
    headers = {} if declared else {"transfer-encoding": "chunked"}
    media = hostile(serve(body, "image/png", **headers))
    connect(media_hosts=[media.host], max_output_bytes=10_000)
    error = refused(FalHook().download if mode == "sync" else adownload, f"{media.base_url}/huge.png")
    assert "10,000-byte cap" in str(error) and "max_output_bytes" in str(error)


def test_a_compressed_bomb_is_counted_decoded(connect, hostile):
    import gzip

    bomb = gzip.compress(b"\x00" * 2_000_000)
    media = hostile(serve(bomb, "image/png", **{"Content-Encoding": "gzip"}))
    connect(media_hosts=[media.host], max_output_bytes=100_000)
    assert len(bomb) < 100_000
    refused(FalHook().download, f"{media.base_url}/bomb.png")


def test_an_inline_data_uri_above_the_cap_is_refused(connect):
    import base64

    connect(max_output_bytes=1_000)
    uri = "data:image/png;base64," + base64.b64encode(b"\x00" * 5_000).decode()
    refused(FalHook().download, uri)
    assert FalHook().download("data:image/png;base64," + base64.b64encode(PNG).decode()) == PNG


def test_dns_rebinding_is_caught_at_connect_time(connect, hostile, monkeypatch):
    """A name that resolves to a public address when checked, then to loopback when connecting, is refused at
    the connection: the address actually connected to is the one checked. (The system resolver is scripted;
    the public address is never connected to.)"""
    media = hostile(serve())
    answers = iter([("93.184.216.34", media.port), ("127.0.0.1", media.port)])
    real = socket.getaddrinfo

    def scripted(host, port, *args, **kwargs):
        if host == "rebind.example":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", address)]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", scripted)
    error = refused(FalHook().download, f"https://rebind.example:{media.port}/mask.png")
    assert "loopback" in str(error)
    assert media.accepted == 0


def test_copy_outputs_streams_to_storage_and_removes_a_partial_file(connect, hostile, tmp_path):
    """The single operator's copy streams into the file; a file cut off by the cap leaves nothing behind, and the
    error names the request."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.results import build_result
    from airflow_provider_sam3.operators.fetched_results import fetch_result_document  # noqa: F401 - same wiring
    from airflow_provider_sam3.storage.outputs import copy_outputs

    media = hostile(
        lambda method, path, server: (
            200,
            {"Content-Type": "image/png", "transfer-encoding": "chunked"},
            PNG if path == "/small.png" else b"\x00" * 40_000,
        )
    )
    connect(media_hosts=[media.host], max_output_bytes=20_000)
    hook = FalHook()
    rid = "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"
    ref = RequestReference(
        endpoint_id="fal-ai/sam-3/image", request_id=rid, status_url="-", response_url="-", cancel_url="-"
    )
    output = {
        "masks": [
            {"url": f"{media.base_url}/small.png", "content_type": "image/png"},
            {"url": f"{media.base_url}/big.png", "content_type": "image/png"},
        ]
    }
    document = build_result(
        ENDPOINTS[ref.endpoint_id], output, reference=ref, image=None, completed_at=1.0, inference_seconds=None
    )
    with pytest.raises(exc.FalOutputRefusedError):
        copy_outputs(document, str(tmp_path), download=hook.download, output_json=output, stream=hook.download_to)
    assert sorted(os.listdir(tmp_path / rid)) == ["mask_000.png"]
    assert (tmp_path / rid / "mask_000.png").read_bytes() == PNG


def test_a_refused_output_fails_the_operator_for_good_naming_the_request(hostile, connect, photo, tmp_path):
    """End to end on the emulator-compatible path: a result naming a file:// mask fails the task without a retry,
    with a message that says why (not a lost connection to fal's queue) and names the request."""
    from airflow.sdk.exceptions import AirflowFailException
    from hostile import json_answer, submit_answer

    from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

    rid = "5f0c6a52-1f7e-4f8b-9d0e-3c2a1b4d5e6f"

    def answer(method, path, server):
        base = f"{server.base_url}/fal-ai/sam-3/requests/{rid}"
        if method == "POST":
            return submit_answer(rid, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")
        if "/status" in path:
            return json_answer({"status": "COMPLETED", "logs": None, "request_id": rid})
        return json_answer({"masks": [{"url": "file:///etc/passwd", "content_type": "image/png"}]})

    queue = hostile(answer)
    connect(host=queue.host)
    operator = SegmentImageOperator(
        task_id="t", image=str(photo), prompt="square", deferrable=False, output_path=str(tmp_path / "out")
    )
    with pytest.raises(AirflowFailException) as raised:
        operator.execute({})
    cause = raised.value.__cause__
    assert isinstance(cause, exc.FalOutputRefusedError) and cause.request_id == rid
    assert "file://" in str(raised.value) and "lost its connection" not in str(raised.value)
    assert list((tmp_path / "out" / rid).iterdir()) == []


@pytest.mark.parametrize(
    ("content_type", "file_name", "stored"),
    [
        ("text/html", "page.html", "model_glb.bin"),
        ("application/x-sh", "run.sh", "model_glb.bin"),
        (None, "evil.py", "model_glb.bin"),
        ("model/gltf-binary", "x.sh", "model_glb.glb"),
        (None, "mesh.glb", "model_glb.glb"),
    ],
)
def test_file_extensions_come_from_a_fixed_allow_list(content_type, file_name, stored, tmp_path):
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.results import build_result
    from airflow_provider_sam3.storage.outputs import copy_outputs

    url = "https://media.example.com/files/x"
    entry = {"url": url, "file_name": file_name, **({"content_type": content_type} if content_type else {})}
    output = {
        "model_glb": entry,
        "visualization": {"url": url + "v", "content_type": "image/png"},
        "metadata": {"num_people": 0, "people": []},
    }
    ref = RequestReference(
        endpoint_id="fal-ai/sam-3/3d-body", request_id="req-1", status_url="-", response_url="-", cancel_url="-"
    )
    document = build_result(
        ENDPOINTS[ref.endpoint_id], output, reference=ref, image=None, completed_at=1.0, inference_seconds=None
    )
    copy_outputs(document, str(tmp_path), download=lambda u: b"data", output_json=output)
    names = sorted(os.listdir(tmp_path / "req-1"))
    assert stored in names
    assert not any(name.endswith((".html", ".sh", ".py")) for name in names)


@pytest.mark.parametrize("where", ["loopback_elsewhere", "metadata", "redirect_to_loopback"])
def test_the_image_size_probe_never_reaches_the_workers_network(where, connect, hostile, fal_emulator, caplog):
    """An RLE request on an image URL reads the image's size from its header; a templated URL naming a private
    address (or redirecting to one) is not probed: the size is simply unknown, and the request goes on."""
    import io
    import logging

    from PIL import Image

    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.operators.request_bodies import prepare_image_argument

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, format="PNG")
    inner = hostile(serve(buffer.getvalue()))
    outer = hostile(redirect(f"{inner.base_url}/x.png"))
    url = {
        "loopback_elsewhere": f"{inner.base_url}/x.png",
        "metadata": "http://169.254.169.254/latest/x.png",
        "redirect_to_loopback": f"{outer.base_url}/x.png",
    }[where]
    if where == "redirect_to_loopback":
        connect(media_hosts=[outer.host])
    log = logging.getLogger("probe-test")
    sent, image, _ = prepare_image_argument(ENDPOINTS["fal-ai/sam-3/image-rle"], url, "image", log)
    assert sent == url and image["width"] is None
    assert inner.accepted == 0
    # the same probe on the queue host (the emulator) reads the size
    hosted = fal_emulator.host_file(buffer.getvalue(), "x.png", "image/png")
    assert prepare_image_argument(ENDPOINTS["fal-ai/sam-3/image-rle"], hosted, "image", log)[1]["width"] == 40


def test_behind_a_proxy_private_addresses_are_still_refused(connect, hostile, monkeypatch):
    """With HTTPS_PROXY set the proxy connects, but a URL whose host resolves to a private address is still
    refused before anything is sent to the proxy."""
    proxy = hostile(tls=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://{proxy.host}")
    media = hostile(serve())
    for url in (f"{media.base_url}/mask.png", "https://169.254.169.254/x", f"https://localhost:{media.port}/x"):
        refused(FalHook().download, url)
    assert proxy.accepted == 0 and media.accepted == 0


def test_media_hosts_may_be_a_comma_separated_string(connect, hostile):
    """The connection form's field is a string: ``"cdn.example.com, 127.0.0.1:PORT"`` lists two hosts."""
    media = hostile(serve())
    connect(media_hosts=f"cdn.example.com, {media.host}")
    assert FalHook().get_settings().media_hosts == ("cdn.example.com", media.host)
    assert FalHook().download(f"{media.base_url}/mask.png") == PNG


def test_a_result_naming_thousands_of_files_is_refused_before_any_download(tmp_path):
    """Each file is capped; the number of files is too, so a result cannot multiply the cap (single and batch)."""
    from airflow_provider_sam3.endpoints import ENDPOINTS
    from airflow_provider_sam3.models.reference import RequestReference
    from airflow_provider_sam3.models.results import build_result
    from airflow_provider_sam3.storage.outputs import MAX_OUTPUT_FILES, copy_outputs, output_urls

    output = {
        "masks": [
            {"url": f"https://media.example.com/m{i}.png", "content_type": "image/png"}
            for i in range(MAX_OUTPUT_FILES + 1)
        ]
    }
    ref = RequestReference(
        endpoint_id="fal-ai/sam-3/image", request_id="req-1", status_url="-", response_url="-", cancel_url="-"
    )
    document = build_result(
        ENDPOINTS[ref.endpoint_id], output, reference=ref, image=None, completed_at=1.0, inference_seconds=None
    )
    fetched: list[str] = []
    with pytest.raises(exc.FalOutputRefusedError, match="1,001 output files"):
        output_urls(document)
    with pytest.raises(exc.FalOutputRefusedError):
        copy_outputs(document, str(tmp_path), download=lambda url: fetched.append(url) or b"x", output_json=output)
    assert fetched == [] and os.listdir(tmp_path) == []
