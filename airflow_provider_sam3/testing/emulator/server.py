"""The emulator's HTTP surface (Starlette): fal's queue routes, media files, uploads and ``/_emulator`` admin.

``EmulatorCore`` holds the state (config, queue, media, faults, counters); every method runs on the server's loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.testing.emulator.app_files import RequestContext, requested_media_lifetime
from airflow_provider_sam3.testing.emulator.apps import NOT_JSON, run_app
from airflow_provider_sam3.testing.emulator.config import EmulatorConfig, FaultRule
from airflow_provider_sam3.testing.emulator.faults import EDGE_FAULTS, FaultInjector, fault_response
from airflow_provider_sam3.testing.emulator.media_store import INPUTS_PREFIX, MEDIA_PREFIX, MediaStore
from airflow_provider_sam3.testing.emulator.queue import COMPLETED, IN_QUEUE, Counters, RequestQueue, RequestRecord
from airflow_provider_sam3.testing.emulator.results import AppResult
from airflow_provider_sam3.testing.emulator.uploads import UploadRoutes
from airflow_provider_sam3.testing.emulator.webhooks import deliverable, send_webhook, webhook_payload

log = logging.getLogger("airflow_provider_sam3.testing.emulator")
APP_IDS = frozenset(e.app_id for e in ENDPOINTS.values())
SWEEP_INTERVAL_S = 1.0
LOG_BODY_CHARS = 200
REQUEST_ROUTES = {
    (): ("GET", "result"),
    ("status",): ("GET", "status"),
    ("status", "stream"): ("GET", "stream"),
    ("cancel",): ("PUT", "cancel"),
}
"""What follows ``{owner}/{app}/requests/{id}``: the method it takes and the operation it is."""


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


def _json(
    body: Any, status: int = 200, request_id: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    extra = {"x-fal-request-id": request_id or str(uuid.uuid4()), **(headers or {})}
    return JSONResponse(body, status, headers=extra)


def _fal_headers(request: Request) -> dict[str, str]:
    """The ``X-Fal-*`` headers of a submit (names lower-cased), kept so tests can assert what was asked of fal;
    never ``Authorization`` (the key)."""
    return {name.lower(): value for name, value in request.headers.items() if name.lower().startswith("x-fal-")}


def _wants_logs(request: Request) -> bool:
    return request.query_params.get("logs", "").strip().lower() in ("true", "1")


class QueueRoutes:
    """fal's queue: submit, status, status stream, result and cancel, with auth and fault injection."""

    def __init__(self, core: EmulatorCore) -> None:
        self.core = core

    def _auth_failure(self, request: Request, request_id: str | None) -> Response | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "key" or not key:
            return _json({"detail": "Authentication is required to access this application."}, 401, request_id)
        if key in self.core.config.exhausted_keys:
            return _json({"detail": "User is locked. Reason: Exhausted balance."}, 403, request_id)
        if not hmac.compare_digest(key.encode(), self.core.config.api_key.encode()):
            return _json({"detail": "No user found for Key ID and Secret"}, 401, request_id)
        return None

    async def handle(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if "requests" in parts[2:]:
            return await self._request_call(request, parts)
        endpoint_id = "/".join(parts)
        if endpoint_id not in ENDPOINTS:
            return _json({"detail": f"Application {endpoint_id!r} not found"}, 404)
        if request.method != "POST":
            return _json({"detail": "Method Not Allowed"}, 405)
        return await self._guarded(request, "submit", endpoint_id, None, self._submit)

    async def _request_call(self, request: Request, parts: list[str]) -> Response:
        index = parts.index("requests", 2)
        app_id, sub_path, rest = "/".join(parts[:2]), parts[2:index], parts[index + 1 :]
        if app_id not in APP_IDS or not rest:
            return _json({"detail": "Not Found"}, 404)
        route = REQUEST_ROUTES.get(tuple(rest[1:]))
        if route is None:
            return _json({"detail": "Not Found"}, 404)
        if sub_path or request.method != route[0]:
            return _json({"detail": "Method Not Allowed"}, 405)
        op, request_id = route[1], rest[0]
        counters = self.core.counters
        if op == "status":
            counters.status_calls += 1
        elif op == "stream":
            counters.stream_calls += 1
        elif op == "result":
            counters.result_calls += 1
        record = self.core.queue.get(request_id)
        if record is not None and record.endpoint.app_id != app_id:
            record = None
        handler = {"result": self._result, "status": self._status, "stream": self._stream, "cancel": self._cancel}[op]
        endpoint_id = record.endpoint.endpoint_id if record else None
        fault_target = "status" if op == "stream" else op
        return await self._guarded(request, fault_target, endpoint_id, record, handler, request_id)

    async def _guarded(
        self,
        request: Request,
        op: str,
        endpoint_id: str | None,
        record: RequestRecord | None,
        handler: Any,
        request_id: str | None = None,
    ) -> Response:
        """Apply the fault due to this call (if any), then authentication, then ``handler``."""
        rule = self.core.faults.decide(op, endpoint_id)
        kind = rule.kind if rule else None
        if rule is not None:
            self.core.counters.faults[rule.kind] += 1
            log.info("injecting %s into %s %s", rule.kind, op, request_id or endpoint_id)
            if rule.kind == "slow_response":
                await asyncio.sleep(rule.delay_s)
            elif rule.kind in EDGE_FAULTS or (rule.kind == "drop_connection" and op != "submit"):
                return fault_response(rule.kind, request_id)
        failure = self._auth_failure(request, request_id)
        if failure is not None:
            return failure
        if op == "submit":
            response = await handler(request, endpoint_id, vanish=kind == "vanish")
            return fault_response(kind, None) if kind == "drop_connection" else response
        if kind == "vanish" and record is not None:
            self.core.queue.forget(record)
            record = None
        if record is None:
            if op == "cancel":
                return _json({"status": "NOT_FOUND"}, 404, request_id)
            return _json({"detail": "Request not found"}, 404, request_id)
        return await handler(request, record)

    async def _submit(self, request: Request, endpoint_id: str, *, vanish: bool = False) -> Response:
        raw = await request.body()
        try:
            arguments: Any = json.loads(raw) if raw else {}
        except ValueError:
            arguments = NOT_JSON
        timeout_header = request.headers.get("x-fal-request-timeout")
        try:
            start_timeout = float(timeout_header) if timeout_header is not None else None
        except ValueError:
            return _json({"detail": f"X-Fal-Request-Timeout must be a number of seconds, got {timeout_header!r}"}, 400)
        core = self.core
        record = RequestRecord(
            request_id=str(uuid.uuid4()),
            endpoint=ENDPOINTS[endpoint_id],
            arguments=arguments,
            priority="low" if request.headers.get("x-fal-queue-priority", "").strip().lower() == "low" else "normal",
            runner_hint=request.headers.get("x-fal-runner-hint"),
            webhook_url=request.query_params.get("fal_webhook"),
            start_timeout_s=start_timeout,
            headers=_fal_headers(request),
        )
        rule = core.faults.decide("submit", endpoint_id, request_fault=True)
        if rule is not None:
            record.fault = rule.kind
            core.counters.faults[rule.kind] += 1
        position = core.queue.submit(record)
        core.counters.submissions[endpoint_id] += 1
        if vanish:
            core.queue.forget(record)
        body = {"status": "IN_QUEUE", "request_id": record.request_id, **core.urls(record), "queue_position": position}
        return _json(body, 200, record.request_id)

    async def _status(self, request: Request, record: RequestRecord) -> Response:
        code, body = self.core.status_of(record, _wants_logs(request))
        return _json(body, code, record.request_id)

    async def _stream(self, request: Request, record: RequestRecord) -> Response:
        core, with_logs = self.core, _wants_logs(request)

        async def events() -> Any:
            last_text, last_sent = None, time.monotonic()
            while core.queue.get(record.request_id) is record:
                _, body = core.status_of(record, with_logs)
                text = json.dumps(body)
                if text != last_text:
                    yield f"data: {text}\n\n"
                    last_text, last_sent = text, time.monotonic()
                if body["status"] == COMPLETED:
                    return
                if time.monotonic() - last_sent >= core.config.sse_keepalive_s:
                    yield ": keep-alive\n\n"
                    last_sent = time.monotonic()
                await asyncio.sleep(0.05)

        headers = {"x-fal-request-id": record.request_id, "Cache-Control": "no-cache"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    async def _result(self, request: Request, record: RequestRecord) -> Response:
        if record.state != COMPLETED:
            return _json({"detail": "Request is still in progress"}, 400, record.request_id)
        body = record.result_body()
        if body is None or record.result_status is None:
            return _json({"detail": "Request not found (its result has expired)"}, 404, record.request_id)
        headers = {"x-fal-request-id": record.request_id, **record.result_headers}
        if not record.result_fetched:
            record.result_fetched = True
            self.core.queue.enforce_result_budget()
        return Response(body, record.result_status, headers=headers, media_type="application/json")

    async def _cancel(self, request: Request, record: RequestRecord) -> Response:
        self.core.counters.cancels[record.endpoint.endpoint_id] += 1
        outcome = self.core.queue.cancel(record)
        return _json({"status": outcome}, 202 if outcome == "CANCELLATION_REQUESTED" else 400, record.request_id)


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
