"""Secret hygiene under a real `airflow standalone`: after a real run with a sentinel API key, the key is nowhere.

The deployment gets its key only from an Airflow connection of type ``fal`` (``AIRFLOW_CONN_FAL_DEFAULT``, the
sentinel as password, the emulator as host; no ``FAL_KEY``, no ``FAL_QUEUE_RUN_HOST``), and the emulator accepts
that sentinel and nothing else, so every authenticated call it counts was made with the sentinel.

One DAG run exercises each path the key travels: a deferrable segmentation (worker submit, triggerer poll, worker
fetch), a deferrable batch, a submit-then-deferrable-sensor pair, and two tasks that fail with a fal app error (one
deferrable: the error crosses the trigger event; one on the worker: a synchronous traceback). Then the sentinel (and
its halves, to catch truncated copies) must be absent from:

- every file of the deployment's AIRFLOW_HOME: task, trigger, scheduler, dag-processor and triggerer logs under
  ``logs/``, ``standalone.log``, ``airflow.cfg``, and the raw bytes of the SQLite DB (deleted pages included);
- every text value of every table of the metadata DB, with the tables the brief names (``xcom``,
  ``rendered_task_instance_fields``, ``task_state_store``, ``trigger``) checked for rows of this run first, so
  the checks cannot pass on empty tables;
- the trigger kwargs, sampled while the tasks were deferred (rows are deleted once a trigger is done), both as
  stored (Fernet-encrypted text) and decrypted with the deployment's Fernet key (set here, so it is known);
- the task state store, sampled while the tasks ran (the operators delete their record on success);
- the batch manifest and every output file (batch and segmentation ``output_path``);
- the emulator's own log records (its ``AccessLog`` prints the start of each request body) and anything the
  pytest process wrote to its stdout/stderr, plus the emulator's request summaries.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from manifests import find_manifest
from photos import write_photos

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]

SENTINEL_HEX = uuid.uuid4().hex
SENTINEL = f"sentinel-{SENTINEL_HEX}"
NEEDLES = (SENTINEL, SENTINEL_HEX[:16], SENTINEL_HEX[16:])
"""The key itself, and each half of its random part: a copy cut short, or masked only in part, is still found."""


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


FERNET_KEY = _fernet_key()

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


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    """Only the connection carries the key and the host; SSL_CERT_FILE is kept so the emulator's TLS is trusted."""
    connection = {
        "conn_type": "fal",
        "host": "127.0.0.1",
        "port": fal_emulator_server.port,
        "password": SENTINEL,
        "extra": {"poll_interval": 0.5},
    }
    return {
        "AIRFLOW_CONN_FAL_DEFAULT": json.dumps(connection),
        "SSL_CERT_FILE": str(fal_emulator_server.cert_file),
        "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
    }


# ---------------------------------------------------------------------- where to look


def _hits(text: str) -> list[str]:
    return [needle for needle in NEEDLES if needle in text]


def _shown(text: str, width: int = 240) -> str:
    """The part of ``text`` around the first hit, the sentinel shown as <SENTINEL> for readability."""
    index = min(text.find(n) for n in NEEDLES if n in text)
    excerpt = text[max(0, index - width // 2) : index + width // 2]
    for needle in NEEDLES:
        excerpt = excerpt.replace(needle, "<SENTINEL>")
    return excerpt.replace("\n", "\\n")


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
        for number, line in enumerate(data.split(b"\n"), 1):
            text = line.decode("utf-8", "replace")
            if _hits(text):
                findings.append(f"{path}:{number}: {_shown(text)}")
        if not any(f.startswith(f"{path}:") for f in findings):  # split across lines or binary: say where
            findings.append(f"{path}: at byte {min(data.find(n.encode()) for n in NEEDLES if n.encode() in data)}")
    return findings, count


def scan_database(db_path: Path) -> list[str]:
    """Every text or blob value of every table: ``table.column (rowid): excerpt`` for each hit."""
    findings = []
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = conn.execute(f'SELECT rowid, * FROM "{table}"')
            columns = [d[0] for d in cursor.description]
            for row in cursor:
                for column, value in zip(columns[1:], row[1:]):
                    if isinstance(value, bytes):
                        value = value.decode("utf-8", "replace")
                    if isinstance(value, str) and _hits(value):
                        findings.append(f"table {table}.{column} (rowid {row[0]}): {_shown(value)}")
    finally:
        conn.close()
    return findings


def decrypt_trigger_kwargs(stored: str) -> str:
    """What Airflow decrypts: plain JSON when it starts with '{' (as ``Trigger._decrypt_kwargs``), else Fernet."""
    if stored.startswith("{"):
        return stored
    from cryptography.fernet import Fernet

    return Fernet(FERNET_KEY.encode()).decrypt(stored.encode()).decode()


def sample_until_done(dep, dag_id: str, run_id: str, timeout: float) -> tuple[str, dict, set]:
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


# ---------------------------------------------------------------------- the test


def test_sentinel_key_appears_nowhere_after_a_real_run(
    airflow_deployment, dag_writer, fal_emulator, tmp_path, caplog, capfd
):
    dep = airflow_deployment
    caplog.set_level(logging.DEBUG)  # root: the emulator's AccessLog and uvicorn records, from its thread too
    fal_emulator.configure(api_key=SENTINEL, service_time_s=1.5, concurrency=4)
    assert fal_emulator.api_key == SENTINEL
    for endpoint_id in FAILING_ENDPOINTS:
        fal_emulator.add_fault("app_500", target="submit", endpoint_id=endpoint_id, every=1)

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
    run_id = dep.trigger(dag_id, conf=conf, watch=[*SUCCEEDING, *FAILING, CANARY])
    run_state, triggers, state_rows = sample_until_done(dep, dag_id, run_id, timeout=200)
    tis = dep.task_instances(dag_id, run_id)
    assert run_state == "failed", tis  # the two failing tasks fail the run
    assert {t: tis[t][0] for t in (*SUCCEEDING, CANARY)} == dict.fromkeys((*SUCCEEDING, CANARY), "success"), tis
    assert {t: tis[t][0] for t in FAILING} == dict.fromkeys(FAILING, "failed"), tis
    for sampler in list(dep._samplers.values()):
        sampler.stop()
    time.sleep(1.0)  # let the last log lines (task end, trigger cleanup) reach their files

    # ---- not vacuous: the sentinel was the key in use, and every path it could leak through was exercised
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
    decrypted = {key: decrypt_trigger_kwargs(row["kwargs"]) for key, row in triggers.items()}
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
    access = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_sam3.testing.emulator"]
    assert any(line.startswith("POST /fal-ai/sam-3/image -> 200") for line in access), access[:20]

    # ---- the sentinel is nowhere
    findings: list[str] = []
    home_findings, home_files = scan_files(dep.home)
    assert home_files >= 10 and (dep.home / "logs").is_dir() and dep.log_path.is_file()
    # Airflow 3.3.2 fact seen here: the scheduler's console (standalone.log) echoes task log events *unmasked*
    # (the canary's line reads "canary password=<key>" there, "***" in the task log file). So the console has no
    # masking safety net; the canary's own echo is the one tolerated hit, and only in standalone.log.
    findings += [
        f
        for f in home_findings
        if not (f.startswith(f"{dep.log_path}:") and "canary password=<SENTINEL> [airflow.task]" in f)
    ]
    findings += scan_database(dep.db_path)
    for table, rows in (("xcom", xcoms), ("rendered_task_instance_fields", rendered)):
        findings += [f"table {table} ({row[0]}): {_shown(str(row))}" for row in rows if _hits(str(row))]
    for (trigger_id, _), row in triggers.items():
        if _hits(row["kwargs"]):
            findings.append(f"table trigger.kwargs as stored (id {trigger_id}): {_shown(row['kwargs'])}")
        if _hits(decrypted[(trigger_id, row["kwargs"])]):
            findings.append(
                f"table trigger.kwargs decrypted (id {trigger_id}, {row['classpath']}): "
                f"{_shown(decrypted[(trigger_id, row['kwargs'])])}"
            )
    findings += [
        f"table task_state_store ({t}, {k}, sampled during the run): {_shown(v)}"
        for t, _, k, v in state_rows
        if _hits(v)
    ]
    output_findings, output_files = scan_files(outputs)
    assert output_files > BATCH_IMAGES, output_files  # the manifest and the masks
    findings += output_findings
    findings += [
        f"emulator log record {r.name}: {_shown(r.getMessage())}" for r in caplog.records if _hits(r.getMessage())
    ]
    captured = capfd.readouterr()
    findings += [
        f"pytest process {name}: {_shown(text)}"
        for name, text in (("stdout", captured.out), ("stderr", captured.err))
        if _hits(text)
    ]
    emulator_state = json.dumps({"requests": fal_emulator.requests(), "counters": counters}, default=str)
    if _hits(emulator_state):
        findings.append(f"emulator request summaries: {_shown(emulator_state)}")

    assert not findings, "the sentinel API key leaked:\n" + "\n".join(findings)


def test_the_scanners_find_a_planted_sentinel(tmp_path):
    """The scans above cannot pass because they look wrongly: a planted key, whole or in part, is found."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text(f'{{"event": "key is {SENTINEL}"}}\nclean line\n')
    (tmp_path / "cut.txt").write_text(f"Key sentinel-{SENTINEL_HEX[:20]}...\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    findings, count = scan_files(tmp_path)
    assert count == 3 and len(findings) == 2, findings
    assert "cut.txt:1: Key sentinel-<SENTINEL>" in findings[0], findings
    assert "a.log:1:" in findings[1] and SENTINEL not in findings[1], findings

    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE xcom (value TEXT, blob BLOB)")
    conn.execute("INSERT INTO xcom VALUES (?, ?)", ("clean", f"x{SENTINEL_HEX[16:]}".encode()))
    conn.commit()
    conn.close()
    assert [f.split(":")[0] for f in scan_database(db)] == ["table xcom.blob (rowid 1)"]
