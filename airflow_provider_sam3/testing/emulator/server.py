"""The emulator's HTTP app (Starlette): fal's queue routes (in ``queue_routes``), media files, uploads and the
``/_emulator`` admin routes, mounted together.

``EmulatorCore`` holds the state (config, queue, media, faults, counters); every method runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_sam3.testing.emulator.app_files import RequestContext, requested_media_lifetime
from airflow_provider_sam3.testing.emulator.apps import run_app
from airflow_provider_sam3.testing.emulator.config import EmulatorConfig, FaultRule
from airflow_provider_sam3.testing.emulator.faults import FaultInjector
from airflow_provider_sam3.testing.emulator.media_store import INPUTS_PREFIX, MEDIA_PREFIX, MediaStore
from airflow_provider_sam3.testing.emulator.queue import COMPLETED, IN_QUEUE, Counters, RequestQueue, RequestRecord
from airflow_provider_sam3.testing.emulator.queue_routes import QueueRoutes
from airflow_provider_sam3.testing.emulator.results import AppResult
from airflow_provider_sam3.testing.emulator.uploads import UploadRoutes
from airflow_provider_sam3.testing.emulator.webhooks import deliverable, send_webhook, webhook_payload

__all__ = ["AccessLog", "AdminRoutes", "EmulatorCore", "FileRoutes", "LOG_BODY_CHARS", "SWEEP_INTERVAL_S", "build_app"]

log = logging.getLogger("airflow_provider_sam3.testing.emulator")
SWEEP_INTERVAL_S = 1.0
LOG_BODY_CHARS = 200


class EmulatorCore:
    """All state of one emulator. Not thread-safe: call it on the server's event loop."""

    def __init__(self, config: EmulatorConfig, base_url: str, cert_file: str) -> None:
        self.config = config
        self.base_url = base_url.rstrip("/")
        self.cert_file = cert_file
        self.media = MediaStore(self.base_url, lambda: self.config.media_budget_bytes)
        self.counters = Counters()
        self.faults = FaultInjector(config.faults, config.seed)
        self.queue = RequestQueue(lambda: self.config, self._run_app, self._on_complete, self.counters)
        self.upload_tokens: set[str] = set()
        self.pending_uploads: dict[str, Any] = {}
        """Multipart uploads created and not completed yet, by upload id."""
        self._background: set[asyncio.Task] = set()

    @property
    def media_ttl_s(self) -> float:
        return self.config.media_ttl_s

    async def _run_app(self, record: RequestRecord) -> AppResult:
        lifetime = requested_media_lifetime(record.headers)
        if lifetime is None or lifetime >= self.media_ttl_s:
            return await run_app(record.endpoint, record.arguments, self)
        return await run_app(record.endpoint, record.arguments, RequestContext(self.media, self.cert_file, lifetime))

    def _on_complete(self, record: RequestRecord, result: AppResult) -> None:
        if record.webhook_url and deliverable(record.webhook_url):
            payload = webhook_payload(record.request_id, result.status_code, result.body, result.error)
            self._spawn(self._deliver(record.webhook_url, payload))

    async def _deliver(self, url: str, payload: dict[str, Any]) -> None:
        if await send_webhook(url, payload, self.cert_file):
            self.counters.webhooks_sent += 1
        else:
            self.counters.webhooks_failed += 1

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def start(self) -> None:
        self._spawn(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            self.media.purge()
            for record in self.queue.records.values():
                record.result_body()

    async def close(self) -> None:
        self.queue.clear()
        for task in list(self._background):
            task.cancel()

    def configure(self, **knobs: Any) -> EmulatorConfig:
        self.config = self.config.updated(**knobs)
        if "faults" in knobs or "seed" in knobs:
            self.faults.configure(self.config.faults, self.config.seed)
        if "seed" in knobs:
            self.queue.reseed(self.config.seed)
        self.queue.dispatch()
        return self.config

    def add_fault(self, rule: FaultRule) -> None:
        self.config = self.config.model_copy(update={"faults": [*self.config.faults, rule]})
        self.faults.add(rule)

    def reset(self, config: EmulatorConfig | None = None) -> None:
        """Forget requests, files, counters and faults; ``config`` (if given) replaces the runtime knobs."""
        base = config if config is not None else self.config
        self.config = base.model_copy(
            update={
                "port": self.config.port,
                "cert_dir": self.config.cert_dir,
                "faults": list(base.faults) if config is not None else [],
            }
        )
        self.faults.configure(self.config.faults, self.config.seed)
        self.queue.clear()
        self.media.clear()
        self.counters.clear()
        self.upload_tokens.clear()
        self.pending_uploads.clear()

    def snapshot(self) -> dict[str, Any]:
        c = self.counters
        return {
            "submissions": {"total": sum(c.submissions.values()), "by_endpoint": dict(c.submissions)},
            "status_calls": c.status_calls,
            "stream_calls": c.stream_calls,
            "result_calls": c.result_calls,
            "cancels": {"total": sum(c.cancels.values()), "by_endpoint": dict(c.cancels)},
            "faults": {"total": sum(c.faults.values()), "by_kind": dict(c.faults)},
            "completed": c.completed,
            "billed": c.billed,
            "max_in_progress": c.max_in_progress,
            "in_progress": self.queue.in_progress,
            "queue_length": self.queue.queue_length,
            "webhooks": {"sent": c.webhooks_sent, "failed": c.webhooks_failed},
            "uploads": {"total": c.uploads, "bytes": c.upload_bytes},
            "held": {
                "media_bytes": self.media.media_bytes,
                "media_expired_early": self.media.evicted,
                "result_bytes": self.queue.result_bytes,
            },
        }

    def public_config(self) -> dict[str, Any]:
        data = self.config.model_dump(mode="json")
        data["api_key"] = "***"
        data["exhausted_keys"] = ["***"] * len(data["exhausted_keys"])
        return data

    def urls(self, record: RequestRecord) -> dict[str, str]:
        base = f"{self.base_url}/{record.endpoint.app_id}/requests/{record.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def status_of(self, record: RequestRecord, with_logs: bool) -> tuple[int, dict[str, Any]]:
        body: dict[str, Any] = {"status": record.state, "request_id": record.request_id, **self.urls(record)}
        if record.state == IN_QUEUE:
            body["queue_position"] = self.queue.position(record)
            return 202, body
        body["logs"] = list(record.logs) if with_logs else None
        if record.state != COMPLETED:
            return 202, body
        body["metrics"] = {"inference_time": record.inference_time}
        if record.error is not None:
            body["error"] = record.error
            body["error_type"] = record.error_type
        return 200, body


class FileRoutes:
    """Generated media and hosted inputs (uploads: ``uploads.UploadRoutes``)."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    async def serve(self, request: Request) -> Response:
        prefix = request.url.path.strip("/").split("/", 1)[0]
        item = self.core.media.get(prefix, request.path_params["token"], request.path_params["file_name"])
        if item is None:
            return JSONResponse({"detail": "File not found"}, 404)
        return Response(item.data, media_type=item.content_type)


def _invalid(exc: Exception) -> Response:
    """422 for a refused admin request, with pydantic's errors when there are some."""
    if isinstance(exc, ValidationError):
        detail: Any = json.loads(json.dumps(exc.errors(include_url=False, include_context=False), default=str))
    else:
        detail = str(exc)
    return JSONResponse({"detail": detail}, 422)


class AdminRoutes:
    """``/_emulator/*``: knobs, faults, counters, requests and reset. No key needed."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    async def config(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                knobs = await request.json()
                self.core.configure(**knobs)
            except (ValueError, TypeError, ValidationError) as exc:
                return _invalid(exc)
        return JSONResponse(self.core.public_config())

    async def add_fault(self, request: Request) -> Response:
        try:
            rule = FaultRule.model_validate(await request.json())
        except (ValueError, ValidationError) as exc:
            return _invalid(exc)
        self.core.add_fault(rule)
        return JSONResponse({"faults": [r.model_dump() for r in self.core.config.faults]})

    async def counters(self, request: Request) -> Response:
        return JSONResponse(self.core.snapshot())

    async def requests(self, request: Request) -> Response:
        return JSONResponse([r.summary() for r in self.core.queue.records.values()])

    async def request_page(self, request: Request) -> Response:
        """A page per request (what the provider's "fal request" link opens on the emulator)."""
        from html import escape

        record = self.core.queue.records.get(request.path_params["request_id"])
        if record is None:
            return HTMLResponse("<h1>No such request on this emulator</h1>", status_code=404)
        rows = "".join(
            f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
            for k, v in record.summary().items()
            if k not in ("headers", "arguments")
        )
        title = escape(f"{record.endpoint.endpoint_id} request {record.request_id}")
        return HTMLResponse(f"<!doctype html><title>{title}</title><h1>{title}</h1><table>{rows}</table>")

    async def reset(self, request: Request) -> Response:
        self.core.reset()
        return JSONResponse({"status": "OK"})


class AccessLog:
    """One log line per HTTP request: method, path, status and the start of the body. Never any header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = bytearray()
        status = [0]

        async def receive_logged() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(head) <= LOG_BODY_CHARS:
                head.extend(message.get("body", b"")[: LOG_BODY_CHARS + 1 - len(head)])
            return message

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        outcome: object = None
        try:
            await self.app(scope, receive_logged, send_logged)
            outcome = status[0]
        finally:
            text = head.decode("utf-8", "replace")
            if len(text) > LOG_BODY_CHARS:
                text = text[:LOG_BODY_CHARS] + "..."
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{query}" if query else "")
            log.info("%s %s -> %s %s", scope["method"], path, outcome or "dropped", text)


def build_app(core: EmulatorCore) -> ASGIApp:
    """The emulator's ASGI application around ``core``."""
    admin, files, queue = AdminRoutes(core), FileRoutes(core), QueueRoutes(core)
    uploads = UploadRoutes(core, lambda request: queue._auth_failure(request, None))
    multipart = f"/{INPUTS_PREFIX}/{{token}}/{{file_name}}/multipart/{{upload_id}}"
    routes = [
        Route("/_emulator/config", admin.config, methods=["GET", "POST"]),
        Route("/_emulator/faults", admin.add_fault, methods=["POST"]),
        Route("/_emulator/counters", admin.counters, methods=["GET"]),
        Route("/_emulator/requests", admin.requests, methods=["GET"]),
        Route("/_emulator/requests/{request_id}", admin.request_page, methods=["GET"]),
        Route("/_emulator/reset", admin.reset, methods=["POST"]),
        Route(f"/{MEDIA_PREFIX}/{{token}}/{{file_name:path}}", files.serve, methods=["GET"]),
        Route(f"/{INPUTS_PREFIX}/{{token}}/{{file_name:path}}", files.serve, methods=["GET"]),
        Route("/storage/auth/token", uploads.token, methods=["POST"]),
        Route("/files/upload", uploads.upload, methods=["POST"]),
        Route("/files/upload/multipart", uploads.create_multipart, methods=["POST"]),
        Route(multipart + "/{part_number:int}", uploads.put_part, methods=["PUT"]),
        Route(multipart + "/complete", uploads.complete, methods=["POST"]),
        Route("/{path:path}", queue.handle, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    return AccessLog(Starlette(routes=routes))
