"""fal's queue routes in the emulator: submit, status, status stream, result and cancel, with auth and fault
injection (``server.EmulatorCore`` holds the state they act on)."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from airflow_provider_sam3.endpoints import ENDPOINTS
from airflow_provider_sam3.testing.emulator.apps import NOT_JSON
from airflow_provider_sam3.testing.emulator.faults import EDGE_FAULTS, fault_response
from airflow_provider_sam3.testing.emulator.queue import COMPLETED, RequestRecord

if TYPE_CHECKING:
    from airflow_provider_sam3.testing.emulator.server import EmulatorCore

__all__ = ["APP_IDS", "QueueRoutes", "REQUEST_ROUTES", "json_response"]

log = logging.getLogger("airflow_provider_sam3.testing.emulator")
APP_IDS = frozenset(e.app_id for e in ENDPOINTS.values())
REQUEST_ROUTES = {
    (): ("GET", "result"),
    ("status",): ("GET", "status"),
    ("status", "stream"): ("GET", "stream"),
    ("cancel",): ("PUT", "cancel"),
}
"""What follows ``{owner}/{app}/requests/{id}``: the method it takes and the operation it is."""


def json_response(
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
            return json_response({"detail": "Authentication is required to access this application."}, 401, request_id)
        if key in self.core.config.exhausted_keys:
            return json_response({"detail": "User is locked. Reason: Exhausted balance."}, 403, request_id)
        if not hmac.compare_digest(key.encode(), self.core.config.api_key.encode()):
            return json_response({"detail": "No user found for Key ID and Secret"}, 401, request_id)
        return None

    async def handle(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if "requests" in parts[2:]:
            return await self._request_call(request, parts)
        endpoint_id = "/".join(parts)
        if endpoint_id not in ENDPOINTS:
            return json_response({"detail": f"Application {endpoint_id!r} not found"}, 404)
        if request.method != "POST":
            return json_response({"detail": "Method Not Allowed"}, 405)
        return await self._guarded(request, "submit", endpoint_id, None, self._submit)

    async def _request_call(self, request: Request, parts: list[str]) -> Response:
        index = parts.index("requests", 2)
        app_id, sub_path, rest = "/".join(parts[:2]), parts[2:index], parts[index + 1 :]
        if app_id not in APP_IDS or not rest:
            return json_response({"detail": "Not Found"}, 404)
        route = REQUEST_ROUTES.get(tuple(rest[1:]))
        if route is None:
            return json_response({"detail": "Not Found"}, 404)
        if sub_path or request.method != route[0]:
            return json_response({"detail": "Method Not Allowed"}, 405)
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
                return json_response({"status": "NOT_FOUND"}, 404, request_id)
            return json_response({"detail": "Request not found"}, 404, request_id)
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
            return json_response(
                {"detail": f"X-Fal-Request-Timeout must be a number of seconds, got {timeout_header!r}"}, 400
            )
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
        return json_response(body, 200, record.request_id)

    async def _status(self, request: Request, record: RequestRecord) -> Response:
        code, body = self.core.status_of(record, _wants_logs(request))
        return json_response(body, code, record.request_id)

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
            return json_response({"detail": "Request is still in progress"}, 400, record.request_id)
        body = record.result_body()
        if body is None or record.result_status is None:
            return json_response({"detail": "Request not found (its result has expired)"}, 404, record.request_id)
        headers = {"x-fal-request-id": record.request_id, **record.result_headers}
        if not record.result_fetched:
            record.result_fetched = True
            self.core.queue.enforce_result_budget()
        return Response(body, record.result_status, headers=headers, media_type="application/json")

    async def _cancel(self, request: Request, record: RequestRecord) -> Response:
        self.core.counters.cancels[record.endpoint.endpoint_id] += 1
        outcome = self.core.queue.cancel(record)
        return json_response(
            {"status": outcome}, 202 if outcome == "CANCELLATION_REQUESTED" else 400, record.request_id
        )
