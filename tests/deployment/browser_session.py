"""Fixtures for tests that look at Airflow's UI in a real browser (imported by ``conftest.py``).

- ``authed_deployment`` (module): an ``airflow standalone`` with real logins (SimpleAuthManager users ``admin``,
  ``viewer`` and ``nobody``, the last with no role), pointed at the session's fal emulator like the other
  deployment tests; it takes the session pool's one slot and is stopped when its module ends.
- ``authed_dag_writer`` (function): ``dag_writer`` for that deployment.
- ``browser`` (function): Debian's headless Chromium driven through chromedriver by selenium (``make services``
  installs both; a missing one is a failure, not a skip), quit at teardown.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment_session import emulator_env, write_dags_into
from harness import AirflowDeployment, DeploymentPool

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Screenshots (and a failed test's page) land here, at the repository's root (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

#: username -> (role, password) of the authed deployment. An empty role is accepted by Airflow 3.3's
#: SimpleAuthManager (``nobody:`` in ``simple_auth_manager_users``): that user can log in but is refused everything.
USERS = {
    "admin": ("admin", "admin-password-1"),
    "viewer": ("viewer", "viewer-password-2"),
    "nobody": ("", "nobody-password-3"),
}


@pytest.fixture(scope="module")
def authed_deployment(airflow_deployment_pool: DeploymentPool, fal_emulator_server) -> Iterator[AirflowDeployment]:
    dep = airflow_deployment_pool.get(emulator_env(fal_emulator_server), users=USERS)
    try:
        yield dep
    finally:
        if airflow_deployment_pool.current is dep:  # another module's deployment needs neither its memory nor logins
            airflow_deployment_pool.close()


@pytest.fixture
def authed_dag_writer(authed_deployment: AirflowDeployment, request: pytest.FixtureRequest):
    """``dag_writer`` (see ``deployment_session``) writing into ``authed_deployment``'s dags folder."""
    yield from write_dags_into(authed_deployment, request)


@pytest.fixture
def browser(request: pytest.FixtureRequest):
    """A headless Chromium 1400 x 1000 (selenium's ``webdriver.Chrome``). When the test fails, what the browser
    showed last is saved as ``test-artifacts/browser/failed-<test>.png`` and ``.html``."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver (`make services` does).",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            save_failure(driver, request.node.name)
    finally:
        driver.quit()


def save_failure(driver, name: str) -> None:
    """The page (the whole window, and the source of the frame the test was in) of a failed test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = ARTIFACTS / f"failed-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)[:100]}"
    with contextlib.suppress(Exception):
        stem.with_suffix(".html").write_text(f"<!-- {driver.current_url} -->\n{driver.page_source}")
    with contextlib.suppress(Exception):
        driver.switch_to.default_content()
        driver.save_screenshot(str(stem.with_suffix(".png")))
