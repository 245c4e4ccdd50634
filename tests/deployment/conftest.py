"""Fixtures for tests that run a real Airflow deployment (``airflow standalone``).

- ``airflow_deployment_pool`` (session): owns at most one running deployment and stops it at session end.
- ``airflow_deployment_env`` (module): extra environment for the deployment (``AIRFLOW_CONN_*``, ``FAL_*``...).
  Override it in a test module to get a deployment started with that env; modules asking for the same env
  share one instance.
- ``airflow_deployment`` (module): the running :class:`~harness.AirflowDeployment` for this module's env.
- ``dag_writer`` (function): writes a DAG file under a unique dag_id and waits until it is registered.
- ``authed_deployment``, ``authed_dag_writer``, ``browser``: a deployment with real logins and a headless Chromium
  (``browser_session``).

When a test that uses ``airflow_deployment`` fails, the standalone log tail is attached to the report.
"""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from browser_session import authed_dag_writer, authed_deployment, browser  # noqa: E402, F401 - fixtures
from deployment_session import dag_writer, install_sigterm_handler  # noqa: E402, F401 - dag_writer: a fixture
from harness import AirflowDeployment, DeploymentPool  # noqa: E402

_POOLS: list[DeploymentPool] = []


def _close_all() -> None:
    for pool in _POOLS:
        try:
            pool.close()
        except Exception:  # best effort at interpreter exit
            pass


atexit.register(_close_all)


@pytest.fixture(scope="session")
def airflow_deployment_pool(tmp_path_factory: pytest.TempPathFactory):
    install_sigterm_handler()
    # Homes live under pytest's basetemp (kept for the last few sessions) for post-mortem reading.
    pool = DeploymentPool(base_dir=tmp_path_factory.mktemp("airflow-deployments"), keep_home=True)
    _POOLS.append(pool)
    try:
        yield pool
    finally:
        pool.close()
        _POOLS.remove(pool)


@pytest.fixture(scope="module")
def airflow_deployment_env() -> dict[str, str]:
    """Extra env for the deployment; override in a module (module scope) to pass connections/variables."""
    return {}


@pytest.fixture(scope="module")
def airflow_deployment(airflow_deployment_pool: DeploymentPool, airflow_deployment_env) -> AirflowDeployment:
    return airflow_deployment_pool.get(airflow_deployment_env)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)  # for fixtures' teardown (the browser saves what it showed)
    fixtures = getattr(item, "fixturenames", ())
    if report.failed and ("airflow_deployment" in fixtures or "authed_deployment" in fixtures):
        dep = None
        for pool in _POOLS:
            dep = pool.current or (pool.started[-1] if pool.started else None)
        if dep is not None:
            report.sections.append((f"airflow deployment {dep.home}", f"pids={dep.pids()}\n{dep.log_tail(60)}"))
