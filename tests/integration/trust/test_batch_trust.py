"""The batch goes through the same trust boundary (the hook's calls and ``copy_outputs``): a hostile queue cannot
send the key elsewhere, name folders outside ``output_path``, or make the worker fetch private addresses.

The hostile queue here speaks just enough of fal's protocol for a batch: it accepts submits, reports every request
COMPLETED and answers results whose mask URLs the test chooses.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from hostile import json_answer, submit_answer
from manifests import find_manifest, read_manifest
from trust_dags import batch_dag


def hostile_queue(*, urls_on: str | None = None, request_id=None, mask_url: str = "data:image/png;base64,iVBORw0KGgo="):
    """A queue answer: submits get ``request_id()`` (a fresh UUID by default) and URLs on ``urls_on`` (the queue
    itself by default); status is COMPLETED; results name ``mask_url``."""

    def answer(method, path, server):
        if method == "POST":
            rid = request_id() if request_id else str(uuid.uuid4())
            base = f"{urls_on or server.base_url}/fal-ai/sam-3/requests/{rid}"
            return submit_answer(rid, status_url=f"{base}/status", response_url=base, cancel_url=f"{base}/cancel")
        rid = path.split("/requests/", 1)[-1].split("/", 1)[0].split("?", 1)[0]
        if "/status" in path:
            return json_answer({"status": "COMPLETED", "logs": None, "request_id": rid})
        if method == "PUT":
            return json_answer({"status": "ALREADY_COMPLETED"}, 400)
        return json_answer({"masks": [{"url": mask_url, "content_type": "image/png", "width": 96, "height": 64}]})

    return answer


def outside(tmp_path, out) -> list[str]:
    """Files written anywhere under ``tmp_path`` except the inputs and ``out``."""
    found = []
    for path, dirs, files in os.walk(tmp_path):
        for name in files:
            full = os.path.join(path, name)
            if not full.startswith(str(out) + os.sep) and not full.startswith(str(tmp_path / "in") + os.sep):
                found.append(full)
    return found


def manifest_rows(summary) -> list[dict]:
    path = summary["manifest"]
    path = path[len("file://") :] if path.startswith("file://") else path
    with open(path) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture
def run_batch(airflow_db, fal_emulator):
    def run(**conf):
        dag_run = batch_dag.test(run_conf=conf)
        (ti,) = dag_run.get_task_instances()
        return ti.state, (ti.xcom_pull(task_ids=ti.task_id) if ti.state == "success" else None)

    return run


def test_batch_submit_answers_naming_another_host_never_get_the_key(hostile, connect, photos, tmp_path, run_batch):
    evil = hostile()
    queue = hostile(hostile_queue(urls_on=evil.base_url))
    connect(host=queue.host)
    paths = photos(3)
    out = tmp_path / "out"
    state, _ = run_batch(images=str(paths[0].parent), out=str(out))
    assert evil.accepted == 0
    assert all(seen.method == "POST" for seen in queue.requests)  # submits only: nothing polled or fetched
    assert outside(tmp_path, out) == []
    # A queue that answers with another host's URLs answers every submit that way: the batch stops at once (the
    # submits already in flight return), fails without a retry, and lists every image.
    assert state == "failed"
    rows = read_manifest(find_manifest(out))
    assert len(rows) == 3 and any(row["error_class"] == "FalUntrustedUrlError" for row in rows)
    assert all(row["error_class"] in ("FalUntrustedUrlError", "BatchStopped") for row in rows), rows
    assert all("untrusted status_url" in row["error"] for row in rows if row["error_class"] == "FalUntrustedUrlError")
    assert all(row["submissions"] == 1 for row in rows if row["error_class"] == "FalUntrustedUrlError")  # fal has it


def test_batch_request_ids_cannot_climb_out_of_output_path(hostile, connect, photos, tmp_path, run_batch):
    ids = iter(["../../escaped", "/tmp/sam3-escaped", "..%2f..%2fescaped"])
    queue = hostile(hostile_queue(request_id=lambda: next(ids)))
    connect(host=queue.host)
    paths = photos(3)
    out = tmp_path / "a" / "out"
    state, _ = run_batch(images=str(paths[0].parent), out=str(out))
    assert outside(tmp_path, out) == []
    assert not os.path.exists("/tmp/sam3-escaped") and not (tmp_path / "escaped").exists()
    assert all(seen.method == "POST" for seen in queue.requests)
    assert state == "failed"  # the queue's answers are refused: the batch stops, listing every image
    rows = read_manifest(find_manifest(out))
    assert len(rows) == 3 and any("unusable request id" in row["error"] for row in rows), rows


@pytest.mark.parametrize(
    "mask_url",
    ["https://169.254.169.254/latest/meta-data/iam/x.png", "file:///etc/passwd", "http://media.example.com/x.png"],
)
def test_batch_outputs_on_private_or_unsafe_urls_are_not_fetched(
    mask_url, hostile, connect, photos, tmp_path, run_batch, capfd
):
    """The batch's downloads (``hook.adownload``) refuse them with the same final error; nothing is written. (How
    the batch then accounts for the image, failed now or fetched again on a retry, is the batch's own rule.)"""
    queue = hostile(hostile_queue(mask_url=mask_url))
    connect(host=queue.host)
    paths = photos(2)
    out = tmp_path / "out"
    state, summary = run_batch(images=str(paths[0].parent), out=str(out))
    log = "".join(capfd.readouterr())
    assert "lost its connection" not in log
    # Refused for good (fetching it again would be refused again): the image fails, its request id kept.
    assert state == "success" and summary["failed"] == 2
    rows = manifest_rows(summary)
    assert all(row["error_class"] == "FalOutputRefusedError" and "was not fetched" in row["error"] for row in rows)
    assert all(row["request_id"] for row in rows)
    assert outside(tmp_path, out) == []
    for path, dirs, files in os.walk(out):
        assert not any(name.startswith("mask_") for name in files), (path, files)
