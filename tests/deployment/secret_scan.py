"""Secret hygiene for real deployments (standalone on SQLite, and the Postgres/Celery cluster): one sentinel key,
one DAG that sends it down every path, and the scanners that look for it afterwards.

The deployment gets its key only from an Airflow connection of type ``fal`` (``AIRFLOW_CONN_FAL_DEFAULT``, the
sentinel as password, the emulator as host; no ``FAL_KEY``, no ``FAL_QUEUE_RUN_HOST``), and the emulator accepts
that sentinel and nothing else, so every authenticated call it counts was made with the sentinel.

:data:`HYGIENE_DAG` exercises each path the key travels: a deferrable segmentation (worker submit, triggerer poll,
worker fetch), a deferrable batch, a submit-then-deferrable-sensor pair, two tasks that fail with a fal app error
(one deferrable: the error crosses the trigger event; one on the worker: a synchronous traceback), and a canary
that logs the key on purpose (the masker must turn it into ``***``). :func:`run_hygiene_dag` runs it, samples the
trigger kwargs and the task state store while the tasks run (both are deleted when done), and proves the checks
are not vacuous; :func:`findings_outside_the_database` scans everything but the metadata DB, whose dump each
suite scans in its own way.

:data:`NEEDLES` are the key, each half of its random part (a copy cut short, or masked only in part, is still
found) and its obvious encodings: hex (Postgres ``bytea``), base64 at each of the three byte alignments, standard
and URL-safe (Celery message bodies, Fernet-less blobs).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests import find_manifest
from photos import write_photos
from waiting import wait_until

SENTINEL_HEX = uuid.uuid4().hex
SENTINEL = f"sentinel-{SENTINEL_HEX}"


def encodings(secret: str) -> list[str]:
    """Substrings that any hex or base64 encoding of a text containing ``secret`` must contain."""
    raw = secret.encode()
    found = [raw.hex()]
    for shift in range(3):
        # Encode behind ``shift`` filler bytes; keep only the characters that depend on the secret alone.
        encoded = base64.b64encode(b"\0" * shift + raw).decode().rstrip("=")
        head = {0: 0, 1: 2, 2: 3}[shift]  # characters that mix filler bits with the secret's
        core = encoded[head : len(encoded) - 2]  # the last 1-2 characters depend on what follows
        found += [core, core.replace("+", "-").replace("/", "_")]
    return list(dict.fromkeys(found))


NEEDLES = (SENTINEL, SENTINEL_HEX[:16], SENTINEL_HEX[16:], *encodings(SENTINEL))

HYGIENE_DAG = '''
import logging

import pendulum
from airflow.sdk import BaseHook, dag, task

from airflow_provider_sam3.operators.batch import Sam3BatchOperator
from airflow_provider_sam3.operators.sam3 import SegmentImageOperator, SegmentImageRleOperator
from airflow_provider_sam3.sensors.fal import FalRequestSensor

# retries=2 where the task should succeed: a spare for Airflow 3.3.2's resume race (see test_sam3_deployment).


@dag(dag_id="{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False)
def the_dag():
    SegmentImageOperator(
        task_id="segment",
        image="{{ dag_run.conf['image'] }}",
        prompt="square",
        output_path="{{ dag_run.conf['segment_out'] }}",
        deferrable=True,
        poll_interval=0.5,
        retries=2,
        retry_delay=1,
    )
    Sam3BatchOperator(
        task_id="batch",
        images="{{ dag_run.conf['images'] }}",
        output_path="{{ dag_run.conf['batch_out'] }}",
        arguments={"prompt": "box"},
        deferrable=True,
        on_image_failure="report",
        poll_interval=0.5,
        retries=2,
        retry_delay=1,
    )
    submitted = SegmentImageOperator(
        task_id="submit",
        version="3.1",
        image="{{ dag_run.conf['image'] }}",
        prompt="square",
        wait_for_completion=False,
        retries=2,
        retry_delay=1,
    )
    FalRequestSensor(
        task_id="wait",
        reference=submitted.output,
        deferrable=True,
        poke_interval=0.5,
        timeout=120,
        retries=2,
        retry_delay=1,
    )
    # Both fail: the emulator crashes every request of these two endpoints (an app_500 fault).
    SegmentImageRleOperator(
        task_id="fails_deferred",
        image="{{ dag_run.conf['image'] }}",
        prompt="box",
        deferrable=True,
        poll_interval=0.5,
        retries=0,
    )
    SegmentImageRleOperator(
        task_id="fails_on_worker",
        version="3.1",
        image="{{ dag_run.conf['image'] }}",
        prompt="box",
        deferrable=False,
        poll_interval=0.5,
        retries=0,
    )


    @task
    def canary():
        """Logs the connection's password on purpose: the masker must turn it into *** in the task log."""
        logging.getLogger("airflow.task").info("canary password=%s", BaseHook.get_connection("fal_default").password)

    canary()


the_dag()
'''

SUCCEEDING = ("segment", "batch", "submit", "wait")
CANARY = "canary"
FAILING = ("fails_deferred", "fails_on_worker")
FAILING_ENDPOINTS = ("fal-ai/sam-3/image-rle", "fal-ai/sam-3-1/image-rle")
BATCH_IMAGES = 4
CANARY_ECHO = "canary password=<SENTINEL>"
"""How the canary's own line reads where a component echoes task log events unmasked (see the callers)."""


def connection_env(emulator: Any, api_key: str = SENTINEL) -> dict[str, str]:
    """Only the connection carries the key and the host; SSL_CERT_FILE is kept so the emulator's TLS is trusted."""
    connection = {
        "conn_type": "fal",
        "host": "127.0.0.1",
        "port": emulator.port,
        "password": api_key,
        "extra": {"poll_interval": 0.5},
    }
    return {"AIRFLOW_CONN_FAL_DEFAULT": json.dumps(connection), "SSL_CERT_FILE": str(emulator.cert_file)}


# ---------------------------------------------------------------------- where to look


def hits(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def shown(text: str, width: int = 240) -> str:
    """The part of ``text`` around the first hit, the sentinel shown as <SENTINEL> for readability."""
    index = min(text.find(n) for n in NEEDLES if n in text)
    excerpt = text[max(0, index - width // 2) : index + width // 2]
    for needle in NEEDLES:
        excerpt = excerpt.replace(needle, "<SENTINEL>")
    return excerpt.replace("\n", "\\n")


def scan_text(where: str, text: str) -> list[str]:
    """``where:line: excerpt`` for each line of ``text`` holding a needle."""
    return [f"{where}:{number}: {shown(line)}" for number, line in enumerate(text.split("\n"), 1) if hits(line)]


def scan_files(root: Path) -> tuple[list[str], int]:
    """Every file under ``root``: ``path:line: excerpt`` for each line holding a needle; and how many files."""
    findings, count = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        count += 1
        try:
            data = path.read_bytes()
        except OSError as exc:
            if path.exists():  # not just a file removed while scanning (sqlite journal, log rotation)
                findings.append(f"{path}: unreadable ({exc})")
            continue
        if not any(n.encode() in data for n in NEEDLES):
            continue
        found = scan_text(str(path), data.decode("utf-8", "replace"))
        if not found:  # split across lines or binary: say where
            found = [f"{path}: at byte {min(data.find(n.encode()) for n in NEEDLES if n.encode() in data)}"]
        findings += found
    return findings, count


def decrypt_trigger_kwargs(stored: str, fernet_key: str) -> str:
    """What Airflow decrypts: plain JSON when it starts with '{' (as ``Trigger._decrypt_kwargs``), else Fernet."""
    if stored.startswith("{"):
        return stored
    from cryptography.fernet import Fernet

    return Fernet(fernet_key.encode()).decrypt(stored.encode()).decode()


def sample_until_done(dep: Any, dag_id: str, run_id: str, timeout: float) -> tuple[str, dict, set]:
    """Poll until the run ends, keeping every trigger row (deleted once done) and task state store row seen."""
    triggers: dict[tuple, dict] = {}
    state_rows: set[tuple] = set()
    deadline = time.monotonic() + timeout
    while True:
        for row in dep.trigger_rows():
            triggers.setdefault((row["id"], row["kwargs"]), row)
        state_rows.update(
            dep.query(
                "SELECT task_id, map_index, key, value FROM task_state_store WHERE dag_id=? AND run_id=?",
                (dag_id, run_id),
            )
        )
        state = dep.run_state(dag_id, run_id)
        if state in ("success", "failed"):
            return state, triggers, state_rows
        if time.monotonic() > deadline:
            raise dep.error(
                f"run {dag_id}/{run_id} still {state} after {timeout}s: {dep.task_instances(dag_id, run_id)}"
            )
        time.sleep(0.25)


# ---------------------------------------------------------------------- the run


@dataclass
class HygieneRun:
    """What one run of :data:`HYGIENE_DAG` left, sampled while it ran."""

    dag_id: str
    run_id: str
    outputs: Path
    triggers: dict[tuple, dict]
    decrypted: dict[tuple, str]
    state_rows: set[tuple]
    xcoms: list[tuple]
    rendered: list[tuple]
    counters: dict[str, Any] = field(default_factory=dict)


def run_hygiene_dag(dep: Any, dag_writer: Callable, fal_emulator: Any, tmp_path: Path, fernet_key: str) -> HygieneRun:
    """Run :data:`HYGIENE_DAG` with the sentinel as the only key the emulator accepts, and prove that every path
    the key could leak through was exercised (so the scans that follow cannot pass on nothing)."""
    photo = write_photos(tmp_path / "single", 1, seed=11)[0]
    batch_paths = write_photos(tmp_path / "batch_in", BATCH_IMAGES, seed=12)
    outputs = tmp_path / "outputs"
    conf = {
        "image": str(photo),
        "images": str(batch_paths[0].parent),
        "segment_out": str(outputs / "segment"),
        "batch_out": str(outputs / "batch"),
    }
    dag_id = dag_writer(HYGIENE_DAG)
    # The failing deferred task must reach its error on a worker for its log to be scanned; when the scheduler fails
    # its resumed try before it runs (Airflow's resume race, seen on a busy CI machine), run the scenario again.
    for _ in range(3):
        fal_emulator.reset()
        fal_emulator.configure(api_key=SENTINEL, service_time_s=1.5, concurrency=4)
        assert fal_emulator.api_key == SENTINEL
        for endpoint_id in FAILING_ENDPOINTS:
            fal_emulator.add_fault("app_500", target="submit", endpoint_id=endpoint_id, every=1)
        shutil.rmtree(outputs, ignore_errors=True)
        run_id = dep.trigger(dag_id, conf=conf, watch=[*SUCCEEDING, *FAILING, CANARY])
        run_state, triggers, state_rows = sample_until_done(dep, dag_id, run_id, timeout=240)
        if not any(dep.scheduler_failed_the_try(dag_id, run_id, t) for t in FAILING):
            break
    else:
        raise AssertionError("Airflow's scheduler failed a resumed try in each of 3 runs of the hygiene DAG")
    tis = dep.task_instances(dag_id, run_id)
    assert run_state == "failed", tis  # the two failing tasks fail the run
    assert {t: tis[t][0] for t in (*SUCCEEDING, CANARY)} == dict.fromkeys((*SUCCEEDING, CANARY), "success"), tis
    assert {t: tis[t][0] for t in FAILING} == dict.fromkeys(FAILING, "failed"), tis
    for key, sampler in list(dep._samplers.items()):
        if key[:2] == (dag_id, run_id):
            sampler.stop()
    # Task and trigger log lines reach their files asynchronously: wait for the last lines the assertions and the
    # scan need (the failing tasks' errors, the canary's line), not for a time.
    for task_id in FAILING:
        wait_until(
            lambda task_id=task_id: "HTTP 500" in dep.task_log(dag_id, run_id, task_id),
            120,
            0.2,
            what=f"{task_id}'s fal error in its task log",
        )
    wait_until(
        lambda: "canary password=" in dep.task_log(dag_id, run_id, CANARY), 120, 0.2, what="the canary's log line"
    )

    counters = fal_emulator.counters()
    expected = 1 + BATCH_IMAGES + 1 + len(FAILING)  # segment, batch, submit, the two failing tasks
    assert counters["submissions"]["total"] >= expected, counters  # counted only after the key was accepted
    assert counters["faults"]["by_kind"].get("app_500", 0) == len(FAILING), counters
    assert "deferred" in dep.task_states_seen(dag_id, run_id, "segment")
    assert "deferred" in dep.task_states_seen(dag_id, run_id, "fails_deferred")
    for task_id in FAILING:  # the fal error's text reached the task log (worker traceback / trigger event)
        log = dep.task_log(dag_id, run_id, task_id)
        assert "FalAppError" in log and "HTTP 500" in log, f"{task_id} logged no fal error:\n{log[-2000:]}"
    # The masker is live in this deployment: the key, logged on purpose by the canary task, shows as ***.
    assert "canary password=***" in dep.task_log(dag_id, run_id, CANARY), dep.task_log(dag_id, run_id, CANARY)
    decrypted = {key: decrypt_trigger_kwargs(row["kwargs"], fernet_key) for key, row in triggers.items()}
    classpaths = {row["classpath"].rsplit(".", 1)[-1] for row in triggers.values()}
    assert decrypted and any("fal-ai/sam-3" in text for text in decrypted.values()), (classpaths, decrypted)
    assert state_rows, "no task state store row was ever seen for this run"
    xcoms = dep.query("SELECT task_id, key, value FROM xcom WHERE dag_id=? AND run_id=?", (dag_id, run_id))
    assert {t for t, _, _ in xcoms} >= set(SUCCEEDING), sorted({t for t, _, _ in xcoms})
    rendered = dep.query(
        "SELECT task_id, rendered_fields FROM rendered_task_instance_fields WHERE dag_id=? AND run_id=?",
        (dag_id, run_id),
    )
    assert {t for t, _ in rendered} >= {*SUCCEEDING, *FAILING}, sorted({t for t, _ in rendered})
    manifest = find_manifest(outputs / "batch")
    assert len(manifest.read_text().splitlines()) == BATCH_IMAGES
    return HygieneRun(dag_id, run_id, outputs, triggers, decrypted, state_rows, xcoms, rendered, counters)


def findings_outside_the_database(
    dep: Any,
    run: HygieneRun,
    caplog: Any,
    capfd: Any,
    fal_emulator: Any,
    tolerated: Callable[[str], bool] = lambda finding: False,
    roots: Iterable[Path] = (),
) -> list[str]:
    """The sentinel in the deployment's files (AIRFLOW_HOME and ``roots``), in the trigger kwargs and task state
    rows sampled during the run, in its XComs and rendered fields, in its outputs, in the emulator's log records and
    request summaries, and in what the pytest process printed. ``tolerated`` drops known, explained findings."""
    access = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_sam3.testing.emulator"]
    assert any(line.startswith("POST /fal-ai/sam-3/image -> 200") for line in access), access[:20]

    findings: list[str] = []
    home_findings, home_files = scan_files(dep.home)
    assert home_files >= 10 and (dep.home / "logs").is_dir()
    findings += home_findings
    for root in roots:
        findings += scan_files(root)[0]
    for table, rows in (("xcom", run.xcoms), ("rendered_task_instance_fields", run.rendered)):
        findings += [f"table {table} ({row[0]}): {shown(str(row))}" for row in rows if hits(str(row))]
    for (trigger_id, _), row in run.triggers.items():
        if hits(row["kwargs"]):
            findings.append(f"table trigger.kwargs as stored (id {trigger_id}): {shown(row['kwargs'])}")
        plain = run.decrypted[(trigger_id, row["kwargs"])]
        if hits(plain):
            findings.append(f"table trigger.kwargs decrypted (id {trigger_id}, {row['classpath']}): {shown(plain)}")
    findings += [
        f"table task_state_store ({t}, {k}, sampled during the run): {shown(v if isinstance(v, str) else str(v))}"
        for t, _, k, v in run.state_rows
        if hits(v if isinstance(v, str) else json.dumps(v))
    ]
    output_findings, output_files = scan_files(run.outputs)
    assert output_files > BATCH_IMAGES, output_files  # the manifest and the masks
    findings += output_findings
    findings += [
        f"emulator log record {r.name}: {shown(r.getMessage())}" for r in caplog.records if hits(r.getMessage())
    ]
    captured = capfd.readouterr()
    findings += [
        f"pytest process {name}: {shown(text)}"
        for name, text in (("stdout", captured.out), ("stderr", captured.err))
        if hits(text)
    ]
    emulator_state = json.dumps({"requests": fal_emulator.requests(), "counters": run.counters}, default=str)
    if hits(emulator_state):
        findings.append(f"emulator request summaries: {shown(emulator_state)}")
    return [f for f in findings if not tolerated(f)]
