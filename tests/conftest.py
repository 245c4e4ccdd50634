"""Test session setup: a private AIRFLOW_HOME (set before Airflow is imported), a migrated DB, the emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Runs once, before any test module (and so before Airflow) is imported; never on DAG-file parsing."""
    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="sam3-airflow-home-")
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO)  # dag.test() needs the DAG file inside the dags folder
    os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
    for name in ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FAL_QUEUE_RUN_HOST", "AIRFLOW_CONN_FAL_DEFAULT"):
        os.environ.pop(name, None)  # never let a developer's real key or host leak into a test


pytest_plugins = ["airflow_provider_sam3.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated metadata DB (SQLite) in this session's AIRFLOW_HOME, for dag.test()."""
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return os.environ["AIRFLOW_HOME"]


@pytest.fixture
def no_automatic_collection():
    """Python's cycle collector runs only when the code under test asks: its own passes would hide a missing one."""
    import gc

    was_enabled = gc.isenabled()
    gc.disable()
    yield
    if was_enabled:
        gc.enable()
