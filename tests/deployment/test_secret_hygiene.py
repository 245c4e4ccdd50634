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
from pathlib import Path

import pytest
from secret_scan import (
    CANARY_ECHO,
    NEEDLES,
    SENTINEL,
    SENTINEL_HEX,
    connection_env,
    findings_outside_the_database,
    hits,
    run_hygiene_dag,
    scan_files,
    shown,
)

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(300)]


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


FERNET_KEY = _fernet_key()


@pytest.fixture(scope="module")
def airflow_deployment_env(fal_emulator_server) -> dict[str, str]:
    """Only the connection carries the key and the host (the Fernet key is set here, so it is known)."""
    return {**connection_env(fal_emulator_server), "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY}


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
                    if isinstance(value, str) and hits(value):
                        findings.append(f"table {table}.{column} (rowid {row[0]}): {shown(value)}")
    finally:
        conn.close()
    return findings


# ---------------------------------------------------------------------- the test


def test_sentinel_key_appears_nowhere_after_a_real_run(
    airflow_deployment, dag_writer, fal_emulator, tmp_path, caplog, capfd
):
    dep = airflow_deployment
    caplog.set_level(logging.DEBUG)  # root: the emulator's AccessLog and uvicorn records, from its thread too
    run = run_hygiene_dag(dep, dag_writer, fal_emulator, tmp_path, FERNET_KEY)
    assert dep.log_path.is_file()

    # Airflow 3.3.2 fact seen here: the scheduler's console (standalone.log) echoes task log events *unmasked*
    # (the canary's line reads "canary password=<key>" there, "***" in the task log file). So the console has no
    # masking safety net; the canary's own echo is the one tolerated hit, and only in standalone.log.
    findings = findings_outside_the_database(
        dep,
        run,
        caplog,
        capfd,
        fal_emulator,
        tolerated=lambda f: f.startswith(f"{dep.log_path}:") and f"{CANARY_ECHO} [airflow.task]" in f,
    )
    findings += scan_database(dep.db_path)  # the raw DB file (deleted pages included) is in the home scan
    assert not findings, "the sentinel API key leaked:\n" + "\n".join(findings)


def test_the_scanners_find_a_planted_sentinel(tmp_path):
    """The scans above cannot pass because they look wrongly: a planted key, whole, in part or encoded, is found."""
    import base64

    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text(f'{{"event": "key is {SENTINEL}"}}\nclean line\n')
    (tmp_path / "cut.txt").write_text(f"Key sentinel-{SENTINEL_HEX[:20]}...\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    findings, count = scan_files(tmp_path)
    assert count == 3 and len(findings) == 2, findings
    assert "cut.txt:1: Key sentinel-<SENTINEL>" in findings[0], findings
    assert "a.log:1:" in findings[1] and SENTINEL not in findings[1], findings

    for prefix in ("", "k", "ke", "key"):  # each base64 alignment, standard and URL-safe, and hex
        body = json.dumps({"password": SENTINEL, "prefix": prefix}).encode()
        for encoded in (base64.b64encode(body), base64.urlsafe_b64encode(prefix.encode() + body), body.hex().encode()):
            assert hits(encoded.decode()), (prefix, encoded)
    assert not hits(base64.b64encode(b"a harmless value").decode())
    assert len(NEEDLES) >= 6

    db = tmp_path / "x.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE xcom (value TEXT, blob BLOB)")
    conn.execute("INSERT INTO xcom VALUES (?, ?)", ("clean", f"x{SENTINEL_HEX[16:]}".encode()))
    conn.commit()
    conn.close()
    assert [f.split(":")[0] for f in scan_database(db)] == ["table xcom.blob (rowid 1)"]
