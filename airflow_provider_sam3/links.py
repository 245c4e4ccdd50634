"""The extra link from a task to its fal request, pushed to XCom before the task waits."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

__all__ = ["DASHBOARD_URL", "EMULATOR_URL", "FalRequestLink", "LINK_XCOM_KEY", "request_link"]

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
