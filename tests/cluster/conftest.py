"""Fixtures of the cluster suite: one Postgres + Redis + CeleryExecutor Airflow (two triggerers, two workers) for
the whole session, started on first use and stopped after the suite's last test (or at the end of the session),
failure or not.

- ``airflow_cluster`` (session): the running :class:`~cluster.AirflowCluster`. Its only key is the sentinel of
  ``secret_scan`` in the ``fal_default`` connection, so every scenario feeds the secret-hygiene scan that runs last.
- ``cluster_emulator`` (function): the session's fal emulator, reset, accepting only that sentinel.
- ``dag_writer`` (function): as in the deployment suite, on the cluster.
- ``whole_cluster`` (function): restarts whatever a test killed, so the next one finds two triggerers and two
  workers.

Postgres and Redis missing is a failure, not a skip (``make test`` installs them).
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deployment"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import AirflowCluster  # noqa: E402
from deployment_session import dag_writer, install_sigterm_handler  # noqa: E402, F401 - dag_writer: a fixture
from secret_scan import SENTINEL, connection_env  # noqa: E402

_CLUSTERS: list[AirflowCluster] = []


@atexit.register
def _stop_all() -> None:
    for cluster in list(_CLUSTERS):
        try:
            cluster.stop()
        except Exception:  # best effort at interpreter exit
            pass


def _in_suite(item: pytest.Item | None) -> bool:
    return item is not None and Path(__file__).resolve().parent in Path(str(item.path)).resolve().parents


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the cluster after the suite's last test, not at the end of the session: the tests that follow in
    ``make test`` get the machine's two cores back. (The session finalizer then finds it stopped.)"""
    if _in_suite(item) and not _in_suite(nextitem):
        for cluster in list(_CLUSTERS):
            cluster.stop()


@pytest.fixture(scope="session")
def airflow_cluster(tmp_path_factory: pytest.TempPathFactory, fal_emulator_server):
    install_sigterm_handler()
    cluster = AirflowCluster(
        extra_env=connection_env(fal_emulator_server),
        base_dir=tmp_path_factory.mktemp("airflow-cluster"),
        keep_home=True,
    )
    _CLUSTERS.append(cluster)
    try:
        cluster.start()
        print(f"\n[cluster] healthy after {cluster.startup_seconds}s: {cluster.pids()}", flush=True)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            _CLUSTERS.remove(cluster)
            leftovers = cluster.leftover_pids()
            assert not leftovers, f"processes of the cluster left running: {leftovers}"


@pytest.fixture
def airflow_deployment(airflow_cluster: AirflowCluster) -> AirflowCluster:
    """The deployment suite's fixtures (``dag_writer``) work on the cluster under this name."""
    assert not airflow_cluster.stopped, "the cluster was stopped after the suite's last test; run the suite in order"
    return airflow_cluster


@pytest.fixture
def whole_cluster(airflow_cluster: AirflowCluster):
    yield airflow_cluster
    for name in sorted(airflow_cluster.killed):
        airflow_cluster.restart(name)


@pytest.fixture
def cluster_emulator(fal_emulator):
    fal_emulator.configure(api_key=SENTINEL)
    return fal_emulator


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _CLUSTERS:
        cluster = _CLUSTERS[-1]
        report.sections.append((f"airflow cluster {cluster.home}", f"pids={cluster.pids()}\n{cluster.log_tail(40)}"))
