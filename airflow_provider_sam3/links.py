"""Extra links: a task's fal request (pushed to XCom before the task waits), its SAM 3 tab and a batch's manifest.

The tab and manifest links point at the plugin's pages on this Airflow (``ui.plugin``), under ``[api] base_url``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

__all__ = [
    "BatchManifestLink",
    "DASHBOARD_URL",
    "EMULATOR_URL",
    "FalRequestLink",
    "LINK_XCOM_KEY",
    "Sam3TabLink",
    "request_link",
    "tab_url",
]

LINK_XCOM_KEY = "fal_request_url"
DASHBOARD_URL = "https://fal.ai/dashboard/requests/{request_id}"
EMULATOR_URL = "https://{host}/_emulator/requests/{request_id}"


def request_link(queue_host: str, request_id: str) -> str:
    """fal's dashboard page for a request; the emulator's own page when the queue is the local emulator."""
    if queue_host.startswith(("127.0.0.1", "localhost")):
        return EMULATOR_URL.format(host=queue_host, request_id=request_id)
    return DASHBOARD_URL.format(request_id=request_id)


class FalRequestLink(BaseOperatorLink):
    """Opens the fal request behind a task."""

    name = "fal request"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(key=LINK_XCOM_KEY, ti_key=ti_key) or ""


def _base_path() -> str:
    from airflow.sdk import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _parts(ti_key: Any) -> list[str]:
    return [quote(str(p), safe="") for p in (ti_key.dag_id, ti_key.run_id, ti_key.task_id)]


def tab_url(ti_key: Any) -> str:
    """The task instance's page in the Airflow UI with its SAM 3 tab open."""
    dag_id, run_id, task_id = _parts(ti_key)
    mapped = f"/mapped/{ti_key.map_index}" if getattr(ti_key, "map_index", -1) >= 0 else ""
    return f"{_base_path()}/dags/{dag_id}/runs/{run_id}/tasks/{task_id}{mapped}/plugin/sam3"


class Sam3TabLink(BaseOperatorLink):
    """Opens the task's SAM 3 tab: its masks and scores, or a batch's counts and gallery."""

    name = "SAM 3 tab"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return tab_url(ti_key)


class BatchManifestLink(BaseOperatorLink):
    """Downloads a batch's manifest (one JSON row per image) through the SAM 3 tab's app."""

    name = "batch manifest"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        dag_id, run_id, task_id = _parts(ti_key)
        map_index = getattr(ti_key, "map_index", -1)
        return f"{_base_path()}/sam3/ti/{dag_id}/{run_id}/{task_id}/{map_index}/manifest.jsonl"
