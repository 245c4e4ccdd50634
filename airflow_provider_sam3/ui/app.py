"""The tab's FastAPI app, mounted by the API server under ``/sam3``: one page per task instance and the pictures,
files and manifest it links to.

Airflow does not authenticate a plugin's app: every route here depends on ``requires_access_dag("GET",
TASK_INSTANCE)`` for the DAG in its path (anonymous 401, a user without access 403, as the auth manager decides).
Files are served only from the output location the task itself recorded; images inline, anything else as an
attachment, so nothing stored can run as a page of Airflow's origin. Routes are plain functions: FastAPI runs them
in its thread pool, so reading and rendering never block the API server's event loop. Imported only by the API
server (``ui.plugin.LazyApp``); FastAPI reads the routes' annotations, so they are real objects here.
"""

import mimetypes
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from airflow_provider_sam3.ui import served
from airflow_provider_sam3.ui.records import TaskKey, parse_map_index

__all__ = ["SECURITY_HEADERS", "build_app"]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_INLINE_TYPES = {"image/png", "image/jpeg", "image/webp", "image/gif"}
_TI_PATH = "/ti/{dag_id}/{run_id}/{task_id}/{map_index}"


def build_app() -> Any:
    """The app (built on the API server's first request to it, not when workers import the plugin)."""
    app = FastAPI(
        title="SAM 3",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))],
    )

    @app.middleware("http")
    async def security_headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    _add_routes(app)
    return app


def _add_routes(app: Any) -> None:
    @app.get(_TI_PATH, response_class=HTMLResponse)
    def task_page(
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: str,
        request: Request,
        session: SessionDep,
        status: str | None = None,
        page: int = 1,
    ) -> HTMLResponse:
        code, html = served.task_page(session, _key(dag_id, run_id, task_id, map_index), _mount(request), status, page)
        return HTMLResponse(html, status_code=code)

    @app.get(_TI_PATH + "/overlay.png")
    def single_overlay(dag_id: str, run_id: str, task_id: str, map_index: str, session: SessionDep) -> Response:
        return Response(
            served.single_overlay(session, _key(dag_id, run_id, task_id, map_index)), media_type="image/png"
        )

    @app.get(_TI_PATH + "/thumb.png")
    def batch_thumbnail(
        dag_id: str, run_id: str, task_id: str, map_index: str, at: int, index: int, session: SessionDep
    ) -> Response:
        key = _key(dag_id, run_id, task_id, map_index)
        return Response(served.batch_thumbnail(session, key, at, index), media_type="image/png")

    @app.get(_TI_PATH + "/file")
    def stored_file(
        dag_id: str, run_id: str, task_id: str, map_index: str, location: str, session: SessionDep
    ) -> Response:
        name, chunks = served.stored_file(session, _key(dag_id, run_id, task_id, map_index), location)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if kind in _INLINE_TYPES:
            return StreamingResponse(chunks, media_type=kind)
        safe = "".join(c for c in name if c.isalnum() or c in "._-")[:100] or "file"
        headers = {"Content-Disposition": f'attachment; filename="{safe}"'}
        return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)

    @app.get(_TI_PATH + "/manifest.jsonl")
    def manifest(dag_id: str, run_id: str, task_id: str, map_index: str, session: SessionDep) -> StreamingResponse:
        chunks = served.manifest_chunks(session, _key(dag_id, run_id, task_id, map_index))
        headers = {"Content-Disposition": 'attachment; filename="manifest.jsonl"'}
        return StreamingResponse(chunks, media_type="application/x-ndjson", headers=headers)


def _key(dag_id: str, run_id: str, task_id: str, map_index: str) -> TaskKey:
    return TaskKey(dag_id, run_id, task_id, parse_map_index(map_index))


def _mount(request: Any) -> str:
    """Where this app is mounted, as the browser sees it (the API server's base path included)."""
    return str(request.scope.get("root_path", "")).rstrip("/")
