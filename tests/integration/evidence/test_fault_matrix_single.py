"""Evidence: one SegmentImageOperator task against every fault fal's queue is known to produce, in both modes.

Each row of ``FAULTS`` injects faults into the emulator (which the unmodified fal-client reaches over TLS) and runs
one task under ``dag.test()``, deferrable and on the worker, with ``retries=1``. For every row:

- the task ends (pytest-timeout; the connection's ``request_timeout`` is 1 s, so a slow answer cannot hang it), in
  the expected state, and a failure names its cause: the exception class and its message are in the task log;
- the emulator counted exactly the submissions the task log accounts for: one "Submitted ... request" line per
  request created at fal, plus one "fal may have created a ... request (answer lost)" line per submit whose answer
  was lost (the row says how many of those fal really created), and every submission after the first announced by a
  retry that says it is "submitting anew" (any other retry reattached to the request it already had, never got one,
  or follows a try whose log says its submit's answer was lost);
- the number of tries is the expected one (a fault a retry cannot fix is not retried).

Rows marked ``xfail(strict=True)`` document a bug outside the files this suite may change; see their reason.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.sdk import dag

from airflow_provider_sam3.operators.sam3 import SegmentImageOperator

CONN_ID = "fal_evidence"
REQUEST_TIMEOUT_S = 1.0
SLOW_S = 2.5  # a slow answer: longer than the connection's request_timeout
UNREACHABLE_IMAGE = "https://unreachable.invalid/photo.png"  # valid locally; fal (the emulator) cannot fetch it

SUBMITTED = re.compile(r"Submitted fal-ai/sam-3/image request ([0-9a-f-]{36})")
RESUBMITTED = re.compile(r"submitting (?:the image )?anew")
LOST = re.compile(r"fal may have created a fal-ai/sam-3/image request \(answer lost\)")
RETRIED = re.compile(r"new_state=up_for_retry")


@dataclass(frozen=True)
class Fault:
    """One row: faults to inject, and what the task must do about them."""

    id: str
    faults: tuple[dict[str, Any], ...] = ()
    knobs: dict[str, Any] = field(default_factory=dict)
    image: str | None = None  # default: the local photo (sent as a data URI)
    state: str = "success"
    says: tuple[str, ...] = ()  # in the task log: the exception class ("FalAppError: ...") and message text
    submissions: int = 1
    lost: int = 0  # submits whose answer was lost, each logged as a request fal may have created
    lost_created: int = 0  # how many of those fal (the emulator) really created
    tries: int = 1
    settle_s: float = 0.0  # wait this long after the run before counting (a request created after a timeout)
    bug: str | None = None  # a known bug outside this suite's files: the row is xfail(strict=True)
    modes: tuple[bool, ...] = (True, False)  # deferrable, worker; a fault on submit happens before any deferral


def f(kind: str, target: str, **trigger: Any) -> dict[str, Any]:
    return {"kind": kind, "target": target, **trigger}


FAULTS: list[Fault] = [
    # fal-client retries 429 and nginx's own 502/503/504 (no x-fal-request-id): the task never notices.
    Fault("rate_limit_429_storm_on_submit", (f("rate_limit_429", "submit", first=3),), modes=(True,)),
    Fault("rate_limit_429_storm_on_status", (f("rate_limit_429", "status", first=3),)),
    Fault("rate_limit_429_on_result", (f("rate_limit_429", "result", first=2),)),
    Fault("nginx_502_on_submit", (f("nginx_502", "submit", first=3),), modes=(False,)),
    Fault("nginx_503_on_status", (f("nginx_503", "status", first=3),)),
    Fault("nginx_504_on_result", (f("nginx_504", "result", first=3),)),
    Fault("nginx_503_every_2nd_call_everywhere", (f("nginx_503", "any", every=2),)),
    # A runner error carries a request id: fal-client does not retry it. The hook retries status/result calls;
    # a refused submit created nothing, so the task's retry submits (the first time).
    Fault(
        "runner_503_on_submit",
        (f("runner_503", "submit", first=1),),
        tries=2,
        modes=(True,),
        says=("FalTransientError: fal-ai/sam-3/image: fal's runner failed during submit",),
    ),
    Fault("runner_503_on_status_brief", (f("runner_503", "status", first=2),)),
    # A poll failing after the hook's 5 attempts is polled again; 5 such polls in a row fail the try, and the retry
    # reattaches. A shorter outage (first=6) is survived within the try.
    Fault(
        "runner_503_on_status_surviving_a_failed_poll",
        (f("runner_503", "status", first=6),),
        says=("fal's runner failed during status", "polling again (1 of 5 polls in a row failed)"),
    ),
    Fault(
        "runner_503_on_status_outlasting_five_polls",
        (f("runner_503", "status", first=25),),
        tries=2,
        says=("FalTransientError: ", "fal's runner failed during status", "from a previous try"),
    ),
    Fault(
        "runner_503_on_result_outlasting_the_hook",
        (f("runner_503", "result", first=6),),
        tries=2,
        says=("FalTransientError: ", "fal's runner failed during result", "already completed; fetching its result"),
    ),
    # The app crashes (500 with a request id): fal does not bill it; the retry sees the failure and submits anew.
    Fault(
        "app_500",
        (f("app_500", "submit", first=1),),
        submissions=2,
        tries=2,
        says=(
            "FalAppError: fal-ai/sam-3/image request ",
            "the model app failed",
            "does not bill failed requests",
            "from a previous try failed",
        ),
    ),
    # Dropped connections: retried by fal-client for every call...
    Fault("drop_connection_on_status", (f("drop_connection", "status", first=2),)),
    Fault("drop_connection_on_result", (f("drop_connection", "result", first=2),)),
    # ...but not a submit whose answer was lost after fal created the request: the hook does not resend it (that
    # would pay twice, silently), the try fails saying fal may have created it, and the task's retry submits anew.
    # Both requests are in the log: the lost one as "may have created", the retry's as "Submitted".
    Fault(
        "drop_connection_on_submit",
        (f("drop_connection", "submit", first=1),),
        modes=(False,),
        submissions=2,
        lost=1,
        lost_created=1,
        tries=2,
        says=(
            "FalSubmitOutcomeUnknownError: fal-ai/sam-3/image: submit sent the request but its answer was lost",
            "fal may have created the request",
            "not resubmitted automatically, to avoid paying twice",
        ),
    ),
    # Slower than the connection's request_timeout: the call times out and fal-client retries it.
    Fault("slow_status", (f("slow_response", "status", first=1, delay_s=SLOW_S),)),
    Fault("slow_result", (f("slow_response", "result", first=1, delay_s=SLOW_S),)),
    # A submit that timed out after sending its body is not resent either: fal may have created it (fal does not
    # document whether its edge creates the request of a submit whose answer is late). The try fails saying so and
    # the task's retry submits. The emulator reads a slow submit's body only after the delay, when the client has
    # gone, so it creates nothing: one request, and one lost answer in the log.
    Fault(
        "slow_submit",
        (f("slow_response", "submit", first=1, delay_s=SLOW_S),),
        settle_s=SLOW_S + 0.5,
        modes=(True,),
        lost=1,
        lost_created=0,
        tries=2,
        says=("FalSubmitOutcomeUnknownError: ", "ReadTimeout", "not resubmitted automatically"),
    ),
    # nginx's 504 on submit: the edge forwarded the POST and gave up waiting, so the queue may have created the
    # request. Not resent; the try says so and the retry submits. The emulator's edge fault created nothing.
    Fault(
        "nginx_504_on_submit",
        (f("nginx_504", "submit", first=1),),
        modes=(True,),
        lost=1,
        lost_created=0,
        tries=2,
        says=(
            "FalSubmitOutcomeUnknownError: ",
            "fal's edge gave up waiting for the queue's answer",
            "not resubmitted automatically",
        ),
    ),
    # The request vanishes (404): the try fails saying so; the retry finds it gone and submits anew.
    Fault(
        "vanish_on_status",
        (f("vanish", "status", first=1),),
        submissions=2,
        tries=2,
        says=(
            "FalRequestNotFoundError: ",
            "fal does not know this request during status",
            "gone at fal",
            "submitting anew",
        ),
    ),
    Fault(
        "vanish_on_submit",
        (f("vanish", "submit", first=1),),
        submissions=2,
        tries=2,
        says=("FalRequestNotFoundError: ", "it vanished or its result expired", "submitting anew"),
    ),
    # The result expires before it is fetched: the retry must submit anew, not refetch the missing result.
    Fault(
        "result_expires_before_fetch",
        (f("expire_early", "submit", first=1),),
        submissions=2,
        tries=2,
        says=(
            "FalRequestNotFoundError: ",
            "during result: it vanished or its result expired",
            "is gone at fal (expired); submitting anew",
        ),
    ),
    # Someone else cancels the request at fal mid-run (the dashboard, or a clear whose trigger cancelled it while
    # the next try had already reattached): fal answers 499. The try submits the image anew, says so, and succeeds.
    Fault(
        "cancelled_elsewhere_mid_run",
        (f("cancel_elsewhere", "submit", first=1),),
        submissions=2,
        tries=1,
        knobs={"service_time_s": 1.0},
        says=("was cancelled at fal before it finished", "submitting the image anew (1 of 3 in this try)"),
    ),
    # Errors a retry cannot fix fail once, without retries, even with retries=1.
    Fault(
        "app_rejects_input_422",
        image=UNREACHABLE_IMAGE,
        state="failed",
        tries=1,
        says=("FalValidationError: ", "fal rejected the input: image_url:", "not retried"),
    ),
    Fault(
        "exhausted_balance",
        knobs={"exhausted_keys": ["<api key>"]},
        state="failed",
        submissions=0,
        tries=1,
        modes=(False,),
        says=(
            "FalBalanceExhaustedError: ",
            "the fal account is locked",
            "Exhausted balance",
            "top up the balance",
            "not retried",
        ),
    ),
]


def make_dag(deferrable: bool):
    mode = "deferrable" if deferrable else "worker"

    @dag(dag_id=f"sam3_evidence_fault_matrix_{mode}", schedule=None, params={"image": ""})
    def fault_matrix():
        SegmentImageOperator(
            task_id="seg",
            image="{{ params.image }}",
            prompt="square",
            deferrable=deferrable,
            fal_conn_id=CONN_ID,
            poll_interval=0.2,
            max_poll_interval=0.5,
            timeout=60,
            retries=1,
            retry_delay=0,
        )

    return fault_matrix()


DAGS = {True: make_dag(True), False: make_dag(False)}


def params(rows: list[Fault]) -> list[Any]:
    out = []
    for row in rows:
        for deferrable in row.modes:
            marks = [pytest.mark.xfail(strict=True, reason=row.bug)] if row.bug else []
            out.append(
                pytest.param(row, deferrable, marks=marks, id=f"{row.id}-{'deferrable' if deferrable else 'worker'}")
            )
    return out


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("row", "deferrable"), params(FAULTS))
def test_fault(row, deferrable, run_dag, photo, fal_emulator, fast_retries, capfd, monkeypatch):
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
    knobs = {k: ([fal_emulator.api_key] if v == ["<api key>"] else v) for k, v in row.knobs.items()}
    if knobs:
        fal_emulator.configure(**knobs)
    for fault in row.faults:
        fal_emulator.add_fault(**fault)

    started = time.monotonic()
    results = run_dag(DAGS[deferrable], image=row.image or str(photo))
    if row.settle_s:
        time.sleep(max(0.0, row.settle_s - (time.monotonic() - started)))
    out, err = capfd.readouterr()
    log = out + err
    counters = fal_emulator.counters()

    assert results["seg"][0] == row.state, (results, log[-4000:])
    for text in row.says:
        assert text in log, f"{text!r} not in the task log"
    if row.state == "success":
        document = results["seg"][1]
        assert document["kind"] == "sam3.segmentation" and document["masks"], document
        assert document["request_id"] == SUBMITTED.findall(log)[-1]  # the request the task kept is its own

    submitted = SUBMITTED.findall(log)
    lost = LOST.findall(log)
    tries = 1 + len(RETRIED.findall(log))
    assert counters["submissions"]["total"] == row.submissions, counters
    assert len(lost) == row.lost, lost
    # every request fal created is in the log: as "Submitted", or as one fal may have created (answer lost)
    assert counters["submissions"]["total"] == len(submitted) + row.lost_created, (counters, submitted, lost)
    assert row.lost_created <= len(lost)
    assert len(submitted) == (1 + len(RESUBMITTED.findall(log)) if submitted else 0)  # retries announce resubmits
    assert tries == row.tries, f"{tries} tries"
    if row.faults:
        assert counters["faults"]["total"] >= 1, "the fault never fired: the row tests nothing"
