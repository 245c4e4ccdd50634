"""Secret hygiene on the cluster: after the hygiene DAG (and every scenario before it in the session: they all ran
with the same sentinel as their only key), the key is in no file, no row of any Postgres table, no Redis value.

Beyond what the standalone suite scans (``tests/deployment/test_secret_hygiene.py``, shared through
``secret_scan``), the cluster adds:

- ``pg_dump --data-only`` of both Postgres databases (``airflow``: every table of the metadata DB; ``celery``:
  Celery's result backend), searched for the key, its halves and its hex and base64 encodings;
- the raw files of the Postgres data directory (heap pages with dead tuples, WAL);
- every key and value of every Redis database (Celery's queues, unacked messages, bindings), raw bytes;
- the logs of all seven Airflow processes (both workers' and both triggerers' consoles included), with no
  exception (the standalone suite tolerates the canary's echo in the scheduler's console; Celery workers echo none).
"""

from __future__ import annotations

import logging

import pytest
from secret_scan import (
    findings_outside_the_database,
    hits,
    run_hygiene_dag,
    scan_files,
    scan_text,
    shown,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


def test_sentinel_key_is_nowhere_in_the_cluster(airflow_cluster, dag_writer, cluster_emulator, tmp_path, caplog, capfd):
    dep = airflow_cluster
    caplog.set_level(logging.DEBUG)  # root: the emulator's AccessLog and uvicorn records, from its thread too
    run = run_hygiene_dag(dep, dag_writer, cluster_emulator, tmp_path, dep.env["AIRFLOW__CORE__FERNET_KEY"])

    # Nothing is tolerated here: unlike standalone's scheduler console, no Celery worker console echoes task logs.
    findings = findings_outside_the_database(dep, run, caplog, capfd, cluster_emulator)

    # Every table of both databases, as pg_dump writes them; not vacuous: the run's rows are there.
    dumps = {name: dep.postgres.dump(name) for name in ("airflow", "celery")}
    for table in ("xcom", "rendered_task_instance_fields", "task_instance", "dag_run", "log", "job"):
        assert f"COPY public.{table} " in dumps["airflow"], table
    assert run.run_id in dumps["airflow"]
    assert "COPY public.celery_taskmeta " in dumps["celery"] and "SUCCESS" in dumps["celery"]
    for name, text in dumps.items():
        findings += scan_text(f"pg_dump {name}", text)
    data_findings, data_files = scan_files(dep.postgres.data_dir)
    assert data_files > 100, data_files
    findings += data_findings

    # Redis: every key and value of every database; Celery's own keys are there.
    entries = dep.redis.dump()
    assert any("_kombu.binding." in name for name, _ in entries), [n for n, _ in entries][:20]
    for name, value in entries:
        text = value.decode("utf-8", "replace")
        if hits(text):
            findings.append(f"redis {name}: {shown(text)}")

    assert not findings, "the sentinel API key leaked:\n" + "\n".join(findings)
