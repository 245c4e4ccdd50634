"""The Airflow plugin behind the SAM 3 tab, found through the ``airflow.plugins`` entry point.

Workers import plugins too (for macros), so this module is light: the FastAPI app is built by the API server on its
first request (``LazyApp``). The tab's href is an absolute path under the API server's base path; Airflow fills
``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and ``{MAP_INDEX}`` (left as is for an unmapped task, read as -1).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

__all__ = ["MOUNT", "LazyApp", "Sam3Plugin", "tab_href"]

MOUNT = "/sam3"
"""Where the API server mounts the tab's app (not one of Airflow's reserved prefixes)."""


def tab_href(base_url: str | None = None) -> str:
    """The iframe URL of the tab: the API server's base path, the mount, the task instance's placeholders."""
    if base_url is None:
        from airflow.configuration import conf

        base_url = conf.get("api", "base_url", fallback="") or ""
    base = urlsplit(base_url).path.rstrip("/")
    return f"{base}{MOUNT}/ti/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}"


class LazyApp:
    """An ASGI app that builds ``ui.app.build_app()`` on its first call (fastapi, PIL and numpy stay out of the
    workers that import this plugin)."""

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from airflow_provider_sam3.ui.app import build_app

                    self._app = build_app()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "airflow_provider_sam3.ui.app:build_app"


class Sam3Plugin(AirflowPlugin):
    """A "SAM 3" tab on every task instance: a single image's masks and scores, a batch's counts and gallery."""

    name = "sam3"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": MOUNT, "name": "SAM 3"}]
    external_views = [
        {
            "name": "SAM 3",
            "href": tab_href(),
            "destination": "task_instance",
            "url_route": "sam3",
            "category": "SAM 3",
        }
    ]
