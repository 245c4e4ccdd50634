"""What a queue host (or a proxy in front of it) answers is untrusted: slow answers are cut at a total per-call
deadline that never passes the task's own, the key echoed back in any form is scrubbed before it reaches an
exception, a log, XCom or the batch manifest, odd numbers are nulled or clamped with a note, and a body that cannot
be parsed is a clear error naming the request.

The hostile queue here is a small TLS server on 127.0.0.1 (``hostile.py``) speaking just enough of fal's protocol;
every attack has its positive control, the same queue answering sanely.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
import uuid

import pytest
from hostile import HOLD, TRICKLE, json_answer, submit_answer
from manifests import find_manifest, read_manifest
from trust_dags import batch_dag

from airflow_provider_sam3 import exceptions as exc
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

RID = "7a1c2e3f-4b5d-4e6f-8a9b-0c1d2e3f4a5b"
KEY_ID = "4c1f9a2e-77b3-4d1e-9f0a-5b6c7d8e9f01"
KEY_SECRET = "b3f1c2d4e5a6978812ab34cd56ef7890"
KEY = f"{KEY_ID}:{KEY_SECRET}"
KEY_FORMS = [
    KEY,
    KEY_ID,
    KEY_SECRET,
    base64.b64encode(KEY.encode()).decode(),
    base64.b64encode(f"Key {KEY}".encode()).decode(),
]
MASK_PNG = "data:image/png;base64,iVBORw0KGgo="


def leaked(text: str) -> list[str]:
    return [form for form in KEY_FORMS if form in text]


@pytest.fixture
def keyed(monkeypatch):
    """``keyed(host, **extra)``: ``fal_default`` on ``host`` with a key of fal's ``id:secret`` form."""

    def define(host: str, **extra: object) -> None:
        extra.setdefault("poll_interval", 0.2)
        conn = {"conn_type": "fal", "password": KEY, "host": host, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_FAL_DEFAULT", json.dumps(conn))

    return define


def fal_queue(*, status=None, result=None, status_headers=None, result_raw: bytes | None = None):
    """A one-request queue: submit answers ``RID``; status answers ``status`` (COMPLETED by default) with
    ``status_headers``; the result is ``result`` as JSON (NaN allowed, as a careless server writes it) or
    ``result_raw``; a cancel is accepted."""

    def answer(method, path, server):
        base = f"{server.base_url}/fal-ai/sam-3/requests/{RID}"
        if method == "POST":
            return submit_answer(RID, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")
        if method == "PUT":
            return json_answer({"status": "CANCELLATION_REQUESTED"}, 202)
        if "/status" in path:
            body = json.dumps(status or {"status": "COMPLETED", "logs": None, "request_id": RID}).encode()
            return 200, {"Content-Type": "application/json", **(status_headers or {})}, body
        if result_raw is not None:
            return 200, {"Content-Type": "application/json"}, result_raw
        body = result if result is not None else {"masks": [{"url": MASK_PNG, "content_type": "image/png"}]}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    return answer


def cancels(server) -> int:
    return sum(1 for seen in server.requests if seen.method == "PUT" and seen.path.endswith("/cancel"))


# ------------------------------------------------------------------ slow hosts: a total deadline per call

IN_PROGRESS = {"status": "IN_PROGRESS", "logs": None, "request_id": RID, "padding": " " * 400}


@pytest.mark.parametrize("slowness", [{TRICKLE: "1"}, {HOLD: "120"}], ids=["trickled_body", "held_headers"])
def test_a_slow_status_answer_is_cut_at_the_task_deadline_and_the_request_cancelled(slowness, hostile, keyed, photo):
    """A status body trickled one byte a second (400 bytes) or headers held for two minutes held a
    ``deferrable=False`` task far past ``timeout=6``, with no cancel sent. Now every call is bounded in all by what
    is left of the task's deadline: the task fails as a deadline and cancels its request."""
    queue = hostile(fal_queue(status=IN_PROGRESS, status_headers=slowness))
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False, timeout=6)
    with pytest.raises(exc.FalDeadlineExceededError) as raised:
        operator.execute({})
    assert raised.value.request_id == RID
    assert cancels(queue) == 1
    polls = [seen for seen in queue.requests if "/status" in seen.path]
    assert 1 <= len(polls) <= 3  # the cut call, at most a retry started before the deadline: never a pile of them


def test_a_quick_status_answer_completes_positive_control(hostile, keyed, photo):
    queue = hostile(fal_queue())
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False, timeout=6)
    document = operator.execute({})
    assert document["request_id"] == RID and cancels(queue) == 0


@pytest.mark.parametrize("slowness", [{TRICKLE: "1"}, {HOLD: "120"}, {}], ids=["trickled", "held", "control"])
def test_the_trigger_cuts_a_slow_status_at_its_deadline_and_cancels(slowness, hostile, keyed):
    """In the triggerer too: the poll is bounded by the trigger's deadline, which then fires a timeout event after
    cancelling. The control answers IN_PROGRESS at once: the same deadline, reached between polls."""
    from airflow_provider_sam3.hooks.fal import FalHook
    from airflow_provider_sam3.triggers.fal import FalRequestTrigger

    queue = hostile(fal_queue(status=IN_PROGRESS, status_headers=slowness))
    keyed(queue.host)
    reference = FalHook().submit("fal-ai/sam-3/image", {"image_url": MASK_PNG, "prompt": "x"})
    trigger = FalRequestTrigger(reference=reference.to_dict(), deadline=time.time() + 4, poll_interval=0.5)

    async def first():
        runner = trigger.run()
        try:
            return await runner.__anext__()
        finally:
            await runner.aclose()

    event = asyncio.run(first()).payload
    assert event["status"] == "timeout", event
    assert event["cancel"] == "CANCELLATION_REQUESTED"
    assert cancels(queue) == 1
    if slowness:
        assert "not answering" in event["message"]
    else:
        assert "IN_PROGRESS" in event["message"] or "running" in event["message"]


# ------------------------------------------------------------------ the key echoed back

ECHO = {
    "detail": [
        {
            "loc": ["header", "authorization"],
            "msg": f"invalid header Authorization: Key {KEY}",
            "type": "value_error",
            "input": base64.b64encode(f"Key {KEY}".encode()).decode(),
            "ctx": {"key_id": KEY_ID, "secret": KEY_SECRET},
        }
    ]
}


def echoing_queue(where: str):
    """A queue that echoes the key: in a 422 to the submit, in the status logs, or in the result body."""

    def answer(method, path, server):
        if method == "POST":
            if where == "submit":
                return json_answer(ECHO, 422)
            rid = str(uuid.uuid4())  # one per submit: a batch sends several
            base = f"{server.base_url}/fal-ai/sam-3/requests/{rid}"
            return submit_answer(rid, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")
        rid = path.split("/requests/", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        if "/status" in path:
            logs = [{"message": f"auth seen: Key {KEY}", "level": "INFO", "timestamp": "2026-12-06T00:00:00Z"}]
            return json_answer({"status": "COMPLETED", "logs": logs if where == "logs" else None, "request_id": rid})
        if where == "result":
            return json_answer(ECHO, 422)
        escaped = "".join(f"\\u{ord(char):04x}" for char in KEY)  # the key in JSON's \u escapes
        body = '{"masks": [{"url": "%s", "content_type": "image/png; by=%s", "file_name": "%s"}]}'
        return 200, {"Content-Type": "application/json"}, (body % (MASK_PNG, escaped, KEY_SECRET)).encode()

    return answer


@pytest.mark.parametrize("where", ["submit", "result"])
def test_a_key_echoed_in_an_error_detail_never_reaches_the_exception(where, hostile, keyed, photo):
    queue = hostile(echoing_queue(where))
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    with pytest.raises(Exception) as raised:
        operator.execute({})
    chain, error = [], raised.value
    while error is not None and len(chain) < 10:
        chain.append(f"{type(error).__name__}: {error!s} {error!r} {getattr(error, 'detail', '')}")
        error = error.__cause__ or error.__context__
    text = "\n".join(chain)
    assert "invalid header Authorization" in text  # positive control: fal's message itself is kept
    assert "***" in text
    assert leaked(text) == [], text


def test_a_key_echoed_in_logs_and_results_never_reaches_the_log_or_xcom(hostile, keyed, photo, capfd):
    queue = hostile(echoing_queue("logs"))
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    document = operator.execute({})
    assert document["masks"][0]["url"] is None  # the data URI is not kept; the name fal gave it is cleaned
    assert document["masks"][0]["content_type"] == "image/png; by=***"  # written in JSON's escapes, cleaned too
    log = "".join(capfd.readouterr())
    assert "auth seen" in log  # positive control: fal's log line is forwarded
    assert leaked(log) == [] and leaked(json.dumps(document)) == []


def test_a_key_echoed_in_a_result_never_reaches_the_result_cache(hostile, keyed, photo, tmp_path):
    queue = hostile(echoing_queue("logs"))
    keyed(queue.host)
    cache = tmp_path / "cache"
    kwargs = {"task_id": "t", "image": str(photo), "prompt": "square", "deferrable": False, "result_cache": str(cache)}
    first = SegmentImageOperator(**kwargs, output_path=str(tmp_path / "o1")).execute({})
    second = SegmentImageOperator(**kwargs, output_path=str(tmp_path / "o2")).execute({})
    assert first["cache"]["hit"] is False and second["cache"]["hit"] is True  # positive control: it was cached
    kept = "".join(path.read_text(errors="replace") for path in cache.rglob("*") if path.is_file())
    assert "image/png; by=***" in kept  # fal's text is kept, cleaned
    assert leaked(kept) == [] and leaked(json.dumps(second)) == []


@pytest.mark.parametrize("where", ["submit", "result", "logs"])
def test_a_key_echoed_to_the_batch_never_reaches_its_manifest_or_files(
    where, hostile, keyed, photos, tmp_path, capfd, airflow_db
):
    """The manifest is a file Airflow's log masking never sees: it gets fal's error text, cleaned."""
    queue = hostile(echoing_queue(where))
    keyed(queue.host)
    paths = photos(2)
    out = tmp_path / "out"
    batch_dag.test(run_conf={"images": str(paths[0].parent), "out": str(out)})
    log = "".join(capfd.readouterr())
    written = "".join(path.read_text(errors="replace") for path in out.rglob("*") if path.is_file())
    rows = read_manifest(find_manifest(out))
    assert len(rows) == 2
    assert {row["status"] for row in rows} == ({"succeeded"} if where == "logs" else {"failed"}), rows
    if where != "logs":
        assert "invalid header Authorization" in written  # positive control: the reason is recorded
    assert leaked(written) == [] and leaked(log) == []


# ------------------------------------------------------------------ numbers and bodies from fal


def test_nan_scores_and_wild_boxes_are_nulled_or_clamped_with_a_note(hostile, keyed, photo):
    result = {
        "masks": [{"url": MASK_PNG, "content_type": "image/png"}] * 4,
        "scores": [math.nan, 0.75, math.inf, True],
        "boxes": [[-5, -5, 1e6, 1e6], [0.5, 0.5, 0.25, 0.5], [0.5, math.nan, 0.1, 0.1], [0.5, 0.5, -0.1, 0.1]],
    }
    queue = hostile(fal_queue(result=result))
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    document = operator.execute({})
    json.dumps(document, allow_nan=False)  # valid JSON for a strict parser or a Postgres JSON column
    masks = document["masks"]
    assert [m["score"] for m in masks] == [None, 0.75, None, None]
    assert masks[1]["box"] == [0.5, 0.5, 0.25, 0.5]  # positive control: a sane box is kept exactly
    assert masks[0]["box"] == [0.5, 0.5, 1.0, 1.0]  # clamped to the image
    assert masks[2]["box"] is None and masks[3]["box"] is None
    width, height = document["image"]["width"], document["image"]["height"]
    assert masks[0]["pixel_box"] == [0, 0, width, height]
    notes = "\n".join(document["notes"])
    assert "masks[0].score" in notes and "masks[0].box" in notes and "clamped" in notes
    assert "masks[3].score" in notes and "masks[2].box" in notes


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000 + b"]" * 100_000, b"<html>502 Bad Gateway</html>", b'{"masks": [{"url": '],
    ids=["nested_100000_deep", "html", "truncated"],
)
def test_a_result_body_that_cannot_be_read_names_the_request(raw, hostile, keyed, photo):
    queue = hostile(fal_queue(result_raw=raw))
    keyed(queue.host)
    operator = SegmentImageOperator(task_id="t", image=str(photo), prompt="square", deferrable=False)
    with pytest.raises(Exception) as raised:
        operator.execute({})
    chain, error = [], raised.value
    while error is not None:
        chain.append(error)
        error = error.__cause__
    assert not any(isinstance(e, RecursionError) for e in chain)
    refused = [e for e in chain if isinstance(e, exc.FalOutputRefusedError)]
    assert refused and refused[0].request_id == RID and "JSON document" in str(refused[0])


def test_one_request_id_for_two_images_is_refused_not_waited_on(hostile, keyed, photos, tmp_path, airflow_db):
    """A queue (or a proxy replaying answers) that gives two submits one request id: before, the batch waited for a
    second completion that could never come until its timeout. Now the second answer is refused, naming the id."""
    queue = hostile(fal_queue())  # RID for every submit
    keyed(queue.host)
    paths = photos(3)
    out = tmp_path / "out"
    dag_run = batch_dag.test(run_conf={"images": str(paths[0].parent), "out": str(out)})
    (ti,) = dag_run.get_task_instances()
    rows = read_manifest(find_manifest(out))
    assert len(rows) == 3
    refused = [row for row in rows if row["error_class"] == "FalUntrustedUrlError"]
    posts = sum(1 for seen in queue.requests if seen.method == "POST")
    assert posts >= 2 and len(refused) == posts - 1  # every answer after the first (submits run concurrently)
    assert all("request id it gave another image" in row["error"] for row in refused)
    assert ti.state == "failed"
