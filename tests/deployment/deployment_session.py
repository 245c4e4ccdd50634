"""Session helpers shared by the deployment suite (``airflow standalone``) and the cluster suite (``tests/cluster``):
the SIGTERM handler that lets finalizers stop every process, and the ``dag_writer`` fixture (imported by both
conftests, each of which provides the ``airflow_deployment`` it writes to)."""

from __future__ import annotations

import re
import signal

import pytest


def install_sigterm_handler() -> None:
    # A SIGTERMed pytest would otherwise die without running finalizers and leak every process it started.
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):

        def _on_sigterm(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, _on_sigterm)


@pytest.fixture
def dag_writer(airflow_deployment, request: pytest.FixtureRequest):
    """``dag_writer(source, suffix="") -> dag_id``.

    Every ``{dag_id}`` in ``source`` (plain text replacement, no ``str.format``) becomes a dag_id derived from
    the test name, so it is unique per test; ``suffix`` distinguishes several DAGs of one test. Files are
    removed when the test ends.
    The file is written into the dags folder and the call returns once the DAG is parsed and unpaused.
    """
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
