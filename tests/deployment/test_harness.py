"""Proof that the real-deployment harness works: a core deferrable sensor goes through ``deferred`` under a real
triggerer, XComs and task logs are readable, and clearing a deferred task takes it out of ``deferred``."""

from __future__ import annotations

import time

import pytest
from waiting import wait_until

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(180)]

# DateTimeSensorAsync always defers (TimeDeltaSensor(deferrable=True) returns at once when its target, measured
# from the run's data_interval_end, has already passed by the time the worker starts). The target is rendered
# on the worker, so the wait is measured from the task's start. end_from_trigger=False: the task resumes on a
# worker (execute_complete), the same round trip as the provider's operators.
SENSOR_THEN_TASK = """
import pendulum
from airflow.sdk import dag, task
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False,
     tags=["deployment-test"])
def the_dag():
    wait = DateTimeSensorAsync(
        task_id="wait",
        target_time="{{ (macros.datetime.utcnow() + macros.timedelta(seconds=WAIT_S)).isoformat() }}",
        retries=1,  # Airflow 3.3.2 race: see AIRFLOW_RESUME_RACE in test_sam3_deployment.py
        retry_delay=1,
    )

    @task
    def produce(**context):
        return {"answer": 42, "items": ["a", "b"], "nested": {"ok": True}, "conf": context["dag_run"].conf}

    wait >> produce()


the_dag()
"""


def _dag(wait_s: int) -> str:
    return SENSOR_THEN_TASK.replace("WAIT_S", str(wait_s))


def test_deferrable_sensor_round_trip(airflow_deployment, dag_writer):
    dep = airflow_deployment
    t0 = time.monotonic()
    dag_id = dag_writer(_dag(3))
    t_parsed = time.monotonic() - t0

    run_id = dep.trigger(dag_id, conf={"who": "harness"}, watch=["wait", "produce"])
    state = dep.wait_for_run(dag_id, run_id, timeout=60)
    t_run = time.monotonic() - t0 - t_parsed
    wait_states = dep.watch_task(dag_id, run_id, "wait").stop()
    produce_states = dep.watch_task(dag_id, run_id, "produce").stop()
    print(
        f"\n[round trip] parse wait {t_parsed:.1f}s, run {t_run:.1f}s; wait: "
        f"{dep.watch_task(dag_id, run_id, 'wait').transitions}; produce: {produce_states}"
    )

    assert state == "success", dep.task_instances(dag_id, run_id)
    assert "deferred" in wait_states, wait_states
    assert wait_states[-1] == "success", wait_states
    assert wait_states.index("deferred") < len(wait_states) - 1
    assert produce_states[-1] == "success", produce_states

    assert dep.xcom(dag_id, run_id, "produce") == {
        "answer": 42,
        "items": ["a", "b"],
        "nested": {"ok": True},
        "conf": {"who": "harness"},
    }
    # The sensor returns None: no return_value XCom.
    assert dep.xcom(dag_id, run_id, "wait", default=None) is None

    paths = [p.name for p in dep.task_log_paths(dag_id, run_id, "wait")]
    assert any(".trigger." in p for p in paths), paths

    # Written by DateTimeTrigger.run() in the triggerer, into the task's trigger log file; the triggerer ships trigger
    # log lines to that file asynchronously, so the last may land after the run ends.
    def log_with_event() -> str | None:
        log = dep.task_log(dag_id, run_id, "wait")
        return log if "Trigger fired event" in log or "yielding event" in log else None

    log = wait_until(log_with_event, 30, 0.2, what="the trigger's event line in the task log")
    assert "trigger starting" in log, log[-3000:]
    assert dep.try_number(dag_id, run_id, "wait") <= 2  # a deferral consumes no try; the resume race may


def test_clear_deferred_task_leaves_deferred(airflow_deployment, dag_writer):
    """Clearing a task while it is deferred (trigger running in the triggerer) with the CLI.

    Observed on 3.3.2: the TI goes ``deferred -> None`` (same try) at once, the triggerer cancels the trigger
    as a *user action* and calls its ``on_kill()`` (logged in try 1's trigger log), and the scheduler starts
    try 2 within about a second, which defers again.
    """
    dep = airflow_deployment
    dag_id = dag_writer(_dag(60))
    run_id = dep.trigger(dag_id, watch=["wait"])
    sampler = dep.watch_task(dag_id, run_id, "wait")
    sampler.wait_for("deferred", timeout=40)
    # Clear only once the triggerer runs the trigger: a trigger cleared before pick-up never runs, so there
    # would be nothing to cancel and no on_kill.
    deadline = time.monotonic() + 20
    while "trigger starting" not in dep.task_log(dag_id, run_id, "wait") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "trigger starting" in dep.task_log(dag_id, run_id, "wait")
    assert dep.trigger_rows(), "a deferred task has a trigger row"

    cli_start = sampler.elapsed()
    result = dep.clear_task(dag_id, run_id, "wait")  # airflow tasks clear <dag> -t wait -s LD -e LD -y
    cli_end = sampler.elapsed()
    after_clear = (dep.task_state(dag_id, run_id, "wait"), dep.try_number(dag_id, run_id, "wait"))

    # The scheduler re-runs the cleared task as try 2, which defers again.
    deadline = time.monotonic() + 30
    while (
        not any(t.state == "deferred" and t.try_number == 2 for t in sampler.transitions)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    # The cancellation of try 1's trigger is logged in try 1's trigger log.
    deadline = time.monotonic() + 20
    while (
        "cancelled by user action" not in dep.task_log(dag_id, run_id, "wait", try_number=1)
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    log1 = dep.task_log(dag_id, run_id, "wait", try_number=1)
    seq = [(t.t, t.state, t.try_number) for t in sampler.transitions]
    print(
        f"\n[clear] CLI ran t={cli_start}..{cli_end}s; (state, try) right after the CLI exited: {after_clear}; "
        f"transitions (t, state, try): {seq}"
    )
    if result.stdout.strip():
        print("[clear] CLI stdout tail:", result.stdout[-500:].strip())

    first = next(i for i, t in enumerate(sampler.transitions) if t.state == "deferred")
    deferred_try1 = sampler.transitions[first]
    after = sampler.transitions[first + 1 :]
    assert deferred_try1.try_number == 1, seq
    assert after, f"task never left deferred after the clear: {seq}"
    assert after[0].state in (None, "scheduled", "queued", "running"), seq  # left deferred
    assert after[0].t >= cli_start, seq  # ... because of the clear
    assert any(t.state == "deferred" and t.try_number == 2 for t in after), seq
    assert "Trigger cancelled by user action, invoking on_kill" in log1, log1[-3000:]

    # Tidy up: no 60 s trigger left running for the next test.
    dep.set_run_state(dag_id, run_id, "failed")
    sampler.wait_for(("failed", "success", "skipped", "removed", None), timeout=30)
    sampler.stop()
