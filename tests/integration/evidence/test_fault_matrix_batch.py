"""Evidence: one Sam3BatchOperator task of 12 images against every fault fal's queue is known to produce, in both
modes (deferrable: the batch trigger waits; worker: the task polls).

Each row injects faults into the emulator (reached by the unmodified fal-client over TLS) and runs the batch under
``dag.test()`` with ``on_image_failure="report"``, ``max_resubmits=2`` and a connection whose ``request_timeout`` is
1 s. For every row:

- the task ends (pytest-timeout; nothing waits on a slow answer longer than the connection's timeout) in the expected
  state, with the expected number of tries, and a failure names its cause in the task log;
- the manifest has one row per image, in input order, even when the task fails: a result (its mask files on disk),
  or an error and error class (the row says which classes, and how many of each);
- the emulator created exactly the requests the task log accounts for: the sum of its "Submitted N requests" lines,
  plus the submits whose answer was lost ("fal may have created images[i]'s request (answer lost)") that fal really
  created; every resubmission is announced ("submitting it again"), and the summary's and the manifest's submission
  counts agree with the emulator.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk import dag
from manifests import manifest_rows, output_file
from photos import write_photos

from airflow_provider_sam3.operators.batch import Sam3BatchOperator

CONN_ID = "fal_evidence_batch"
IMAGES = 12
REQUEST_TIMEOUT_S = 1.0
SLOW_S = 2.5  # longer than the connection's request_timeout
UNREACHABLE_IMAGE = "https://unreachable.invalid/photo-{}.png"  # valid locally; fal (the emulator) cannot fetch it

SUBMITTED = re.compile(r"Submitted (\d+) requests to fal-ai/sam-3/image")
AGAIN = re.compile(r"\); submitting it again \(\d of 2\)")
LOST = re.compile(r"fal may have created images\[\d+\]'s request \(answer lost\)")
RETRIED = re.compile(r"new_state=up_for_retry")


@dataclass(frozen=True)
class BatchFault:
    """One row: faults to inject, the batch's options, and how every image must end."""

    id: str
    faults: tuple[dict[str, Any], ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    unreachable: int = 0  # the last N images are URLs fal cannot fetch
    state: str = "success"
    errors: dict[str, int] | None = field(default_factory=dict)  # error class -> rows; the rest succeed (None: any)
    submissions: int | None = IMAGES  # requests the emulator created; None: whatever the log accounts for
    resubmissions: int | None = 0
    lost: int = 0  # submits whose answer was lost (logged)
    lost_created: int = 0  # how many of those the emulator really created
    cancels: int | None = None
    says: tuple[str, ...] = ()
    settle_s: float = 0.0
    exhaust_after: int | None = None  # lock the account once the emulator has this many requests
    modes: tuple[bool, ...] = (True, False)
    completed: int | None = None  # requests the emulator completed (each image paid once: IMAGES)
    write_failures: int = 0  # storing an image's outputs fails this many times (the storage refuses a write)


def f(kind: str, target: str, **trigger: Any) -> dict[str, Any]:
    return {"kind": kind, "target": target, **trigger}


FAULTS: list[BatchFault] = [
    # fal-client retries 429 and nginx's own 502/503/504 (no request id): no image notices.
    BatchFault(
        "rate_limit_429_storm",
        (
            f("rate_limit_429", "submit", every=2),
            f("rate_limit_429", "status", every=3),
            f("rate_limit_429", "result", every=3),
        ),
    ),
    BatchFault(
        "nginx_502_503_504",
        (f("nginx_502", "submit", every=4), f("nginx_503", "status", every=3), f("nginx_504", "result", every=3)),
    ),
    # A runner error on submit carries a request id and created nothing: the image is submitted again.
    BatchFault("runner_503_on_submit", (f("runner_503", "submit", first=3),), resubmissions=3),
    # On status and result the hook retries them; then the next round asks again.
    BatchFault(
        "runner_503_on_status_and_result", (f("runner_503", "status", every=4), f("runner_503", "result", first=2))
    ),
    # The app crashes (500): fal does not bill it and a retry would fail the same way; reported, not resubmitted.
    BatchFault("app_500", (f("app_500", "submit", first=2),), errors={"FalAppError": 2}),
    # Dropped connections: fal-client retries them for status and result...
    BatchFault(
        "drop_connection_on_status_and_result",
        (f("drop_connection", "status", every=3), f("drop_connection", "result", first=3)),
    ),
    # ...but a submit whose answer was lost may have created a request: counted as a submission, said in the log,
    # and resubmitted under max_resubmits (the batch finishes; at most one extra charge per lost answer).
    BatchFault(
        "drop_connection_on_submit",
        (f("drop_connection", "submit", first=2),),
        submissions=14,
        resubmissions=2,
        lost=2,
        lost_created=2,
    ),
    # Slower than request_timeout: status and result calls time out and are retried.
    BatchFault(
        "slow_status_and_result",
        (f("slow_response", "status", first=2, delay_s=SLOW_S), f("slow_response", "result", first=1, delay_s=SLOW_S)),
    ),
    # A slow submit times out after sending its body: treated as a lost answer. The emulator reads its body only
    # after the delay, when the client has gone, so it created nothing.
    BatchFault(
        "slow_submit",
        (f("slow_response", "submit", first=1, delay_s=SLOW_S),),
        resubmissions=1,
        lost=1,
        lost_created=0,
        settle_s=SLOW_S + 0.5,
    ),
    # nginx's 504 on submit: the edge forwarded the POST and gave up waiting; a lost answer too (the emulator's edge
    # created nothing).
    BatchFault("nginx_504_on_submit", (f("nginx_504", "submit", first=1),), resubmissions=1, lost=1, lost_created=0),
    # Requests that vanish (404) and results that expire before they are fetched: submitted again.
    BatchFault("vanish_on_status", (f("vanish", "status", first=2),), submissions=14, resubmissions=2),
    BatchFault("result_expires_before_fetch", (f("expire_early", "submit", first=2),), submissions=14, resubmissions=2),
    # fal rejects two images (it cannot fetch them): reported with fal's reason, not resubmitted.
    BatchFault("app_rejects_two_inputs_422", unreachable=2, errors={"FalValidationError": 2}),
    # The batch's timeout passes while fal is slow: everything still at fal is cancelled and reported.
    BatchFault(
        "batch_timeout_cancels",
        knobs={"service_time_s": 30.0, "concurrency": 2},
        options={"timeout": 3},
        errors={"FalDeadlineExceededError": IMAGES},
        cancels=IMAGES,
    ),
    # The account is locked from the start: the task fails without a retry; every image is in the manifest.
    BatchFault(
        "exhausted_balance",
        knobs={"exhausted_keys": ["<api key>"]},
        state="failed",
        submissions=0,
        resubmissions=None,
        errors={"FalBalanceExhaustedError": 8, "BatchStopped": 4},
        says=(
            "FalBalanceExhaustedError",
            "the fal account is locked",
            "top up the balance",
            "not retried",
            "The batch stopped",
        ),
    ),
    # The balance runs out mid-batch: what succeeded stays stored, what is at fal is listed with its request id (a
    # clear after the top-up fetches it without paying again), what was not submitted says so.
    BatchFault(
        "balance_exhausted_mid_batch",
        options={"max_in_flight": 4, "submit_concurrency": 2},
        knobs={"service_time_s": 0.2},
        exhaust_after=6,
        state="failed",
        submissions=None,
        resubmissions=None,
        errors=None,
        says=("the fal account is locked", "The batch stopped"),
        modes=(False,),
    ),
    # fal completed the requests, but their results cannot be fetched for several rounds (each fetch outlasts the
    # hook's retries): they are fetched again, never submitted again; each image is paid once.
    BatchFault(
        "results_unfetchable_for_several_polls",
        (f("runner_503", "result", first=45),),
        completed=IMAGES,
        says=("not stored yet", "it is fetched again, not submitted again"),
    ),
    # Storing one image's outputs fails once (the storage refuses a write): fetched again, not paid again.
    BatchFault(
        "output_write_fails_once",
        write_failures=1,
        completed=IMAGES,
        says=("not stored yet", "OSError", "it is fetched again, not submitted again"),
    ),
    # fal rejects two images (422) and the task is set to fail on image failures, with a retry to spare: only final
    # failures remain, so the task fails at once; no retry submits them again (each image is submitted once).
    BatchFault(
        "rejected_422_fails_without_retry",
        unreachable=2,
        options={"on_image_failure": "fail"},
        state="failed",
        errors={"FalValidationError": 2},
        completed=IMAGES,
        says=("only final failures remain", "not retried"),
    ),
]


def make_dag(row: BatchFault, deferrable: bool):
    options = {
        "on_image_failure": "report",
        "max_resubmits": 2,
        "poll_interval": 0.2,
        "max_poll_interval": 0.5,
        **row.options,
    }

    @dag(
        dag_id=f"sam3_evidence_batch_{row.id}_{'deferrable' if deferrable else 'worker'}",
        schedule=None,
        params={"images": [], "out": ""},
        render_template_as_native_obj=True,
    )
    def batch_fault():
        Sam3BatchOperator(
            task_id="segment",
            images="{{ params.images }}",
            output_path="{{ params.out }}",
            arguments={"prompt": "box"},
            fal_conn_id=CONN_ID,
            deferrable=deferrable,
            retries=1,
            retry_delay=0,
            **options,
        )

    return batch_fault()


DAGS = {(row.id, deferrable): make_dag(row, deferrable) for row in FAULTS for deferrable in row.modes}


def params(rows: list[BatchFault]) -> list[Any]:
    return [
        pytest.param(row, deferrable, id=f"{row.id}-{'deferrable' if deferrable else 'worker'}")
        for row in rows
        for deferrable in row.modes
    ]


def lock_account_after(emulator, requests: int, stop: threading.Event) -> threading.Thread:
    """Lock the emulator's account (403, exhausted balance) once it has created ``requests`` requests."""

    def watch() -> None:
        while not stop.is_set():
            if emulator.counters()["submissions"]["total"] >= requests:
                emulator.configure(exhausted_keys=[emulator.api_key])
                return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("row", "deferrable"), params(FAULTS))
def test_batch_fault(row, deferrable, airflow_db, fal_emulator, fast_retries, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "fal",
                "password": fal_emulator.api_key,
                "host": fal_emulator.host,
                "extra": {"request_timeout": REQUEST_TIMEOUT_S, "poll_interval": 0.2, "max_poll_interval": 0.5},
            }
        ),
    )
    photos = [str(p) for p in write_photos(tmp_path / "in", IMAGES - row.unreachable)]
    images = photos + [UNREACHABLE_IMAGE.format(n) for n in range(row.unreachable)]
    knobs = {k: ([fal_emulator.api_key] if v == ["<api key>"] else v) for k, v in row.knobs.items()}
    fal_emulator.configure(**{"concurrency": 4, "service_time_s": 0.05, **knobs})
    for fault in row.faults:
        fal_emulator.add_fault(**fault)
    if row.write_failures:
        from airflow_provider_sam3.storage import outputs

        real_copy, failures = outputs.copy_outputs, [row.write_failures]

        def failing_copy(*args, **kwargs):
            if failures[0] > 0:
                failures[0] -= 1
                raise OSError(28, "No space left on device (injected by the test)")
            return real_copy(*args, **kwargs)

        monkeypatch.setattr(outputs, "copy_outputs", failing_copy)
    stop = threading.Event()
    if row.exhaust_after:
        lock_account_after(fal_emulator, row.exhaust_after, stop)

    out = tmp_path / "out"
    started = time.monotonic()
    try:
        dag_run = DAGS[row.id, deferrable].test(run_conf={"images": images, "out": str(out)})
    finally:
        stop.set()
    if row.settle_s:
        time.sleep(max(0.0, row.settle_s - (time.monotonic() - started)))
    log = "".join(capfd.readouterr())
    (ti,) = dag_run.get_task_instances()
    counters = fal_emulator.counters()

    assert ti.state == row.state, log[-4000:]
    for text in row.says:
        assert text in log, f"{text!r} not in the task log"
    assert not RETRIED.findall(log), "the batch handles these faults itself; an account error is not retried"

    rows = manifest_rows(out)
    assert [r["source"] for r in rows] == images, "an image is missing from the manifest, or out of order"
    errors: dict[str, int] = {}
    for r in rows:
        if r["status"] == "succeeded":
            assert r["masks"] and all(output_file(r, m).exists() for m in r["masks"])
        else:
            assert r["error"] and r["error_class"], r
            errors[r["error_class"]] = errors.get(r["error_class"], 0) + 1
    if row.errors is not None:
        assert errors == row.errors, errors
    if row.exhaust_after:  # every kind of image the stop leaves behind is listed
        statuses = {r["status"] for r in rows}
        assert "succeeded" in statuses and errors.get("BatchStopped", 0) >= 1, rows
        assert any(
            "still at fal as request" in r["error"] or "not submitted" in r["error"]
            for r in rows
            if r["error_class"] == "BatchStopped"
        )

    # The emulator created exactly the requests the log accounts for, and the counts agree everywhere.
    submitted = sum(int(n) for n in SUBMITTED.findall(log))
    lost = LOST.findall(log)
    created = counters["submissions"]["total"]
    assert len(lost) == row.lost, lost
    assert created == submitted + row.lost_created, (created, submitted, lost)
    assert sum(r["submissions"] for r in rows) == submitted + len(lost)
    if row.submissions is not None:
        assert created == row.submissions, counters
    if row.state == "success":
        summary = ti.xcom_pull(task_ids="segment")
        assert summary["submissions"] == submitted + len(lost) and summary["images"] == IMAGES
        assert summary["resubmissions"] == len(AGAIN.findall(log))
        assert summary["succeeded"] == IMAGES - sum(errors.values())
    if row.resubmissions is not None:
        assert len(AGAIN.findall(log)) == row.resubmissions
    if row.cancels is not None:
        assert counters["cancels"]["total"] == row.cancels, counters
    if row.completed is not None:
        assert counters["completed"] == row.completed, counters
    if row.faults:
        assert counters["faults"]["total"] >= 1, "the fault never fired: the row tests nothing"
    if row.write_failures:
        assert failures == [0], "the injected write failure never happened: the row tests nothing"
