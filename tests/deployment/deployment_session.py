"""Session helpers shared by the deployment suite (``airflow standalone``) and the cluster suite (``tests/cluster``):
the SIGTERM handler that lets finalizers stop every process, the environment that points a deployment at the fal
emulator, and the ``dag_writer`` fixture (imported by both conftests, each of which provides the
``airflow_deployment`` it writes to; :func:`write_dags_into` serves any other deployment)."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest


def install_sigterm_handler() -> None:
    # A SIGTERMed pytest would otherwise die without running finalizers and leak every process it started.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def _on_sigterm(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _on_sigterm)


def emulator_env(emulator: Any, **connection_extra: Any) -> dict[str, str]:
    """A deployment's extra env for the fal emulator: its ``FAL_QUEUE_RUN_HOST``, ``SSL_CERT_FILE`` and ``FAL_KEY``,
    and a ``fal_default`` connection with its key and host (``connection_extra``: the connection's extra)."""
    connection: dict[str, Any] = {"conn_type": "fal", "password": emulator.api_key, "host": emulator.host}
    if connection_extra:
        connection["extra"] = connection_extra
    return {**emulator.env, "AIRFLOW_CONN_FAL_DEFAULT": json.dumps(connection)}


@pytest.fixture
def dag_writer(airflow_deployment, request: pytest.FixtureRequest):
    """``dag_writer(source, suffix="") -> dag_id``.

    Every ``{dag_id}`` in ``source`` (plain text replacement, no ``str.format``) becomes a dag_id derived from
    the test name, so it is unique per test; ``suffix`` distinguishes several DAGs of one test. Files are
    removed when the test ends.
    The file is written into the dags folder and the call returns once the DAG is parsed and unpaused.
    """
    yield from write_dags_into(airflow_deployment, request)


def write_dags_into(airflow_deployment: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The body of ``dag_writer`` for any deployment: yields the writer, then ends the DAGs' runs and removes their
    files (use it as a fixture's ``yield from``)."""
    written: list[str] = []
    dag_ids: list[str] = []

    def write(source: str, suffix: str = "") -> str:
        base = re.sub(r"[^A-Za-z0-9_]+", "_", request.node.name).strip("_")[:60]
        dag_id = f"deploy_{base}{('_' + suffix) if suffix else ''}"
        airflow_deployment.write_dag(f"{dag_id}.py", source.replace("{dag_id}", dag_id))
        written.append(f"{dag_id}.py")
        dag_ids.append(dag_id)
        airflow_deployment.wait_for_dag(dag_id)
        return dag_id

    yield write
    if airflow_deployment.usable():  # nothing a finished test started keeps running into the next test's counts
        for dag_id in dag_ids:
            airflow_deployment.stop_dag(dag_id)
    # Keep the shared dag-processor's parse load flat: a finished test's DAG file goes away (the DAG turns
    # stale; its runs, logs and code stay in the DB / logs folder for post-mortem reading).
    for filename in written:
        airflow_deployment.remove_dag_file(filename)
