"""Fault injection: which call gets which fault (seeded RNG or schedule), and the responses fal's edge would send.

HTTP faults answer the call itself. ``app_500``, ``expire_early`` and ``cancel_elsewhere`` are request faults:
decided when a request is submitted (the submit succeeds), they make it crash, lose its result right at completion,
or be cancelled halfway through its run by someone else (fal's dashboard, another process holding the reference).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from airflow_provider_sam3.testing.emulator.config import REQUEST_FAULTS, FaultRule

__all__ = ["DroppedResponse", "EDGE_FAULTS", "FaultInjector", "fault_response"]

EDGE_FAULTS = frozenset({"rate_limit_429", "nginx_502", "nginx_503", "nginx_504", "runner_503"})
"""Faults answered in place of the call, which then has no other effect."""
_NGINX_TITLES = {502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable", 504: "504 Gateway Time-out"}


class FaultInjector:
    """Decides, call by call, whether a rule fires. Counting per rule makes ``first``/``every`` schedules exact."""

    def __init__(self, rules: Sequence[FaultRule] = (), seed: int = 0) -> None:
        self.configure(rules, seed)

    def configure(self, rules: Sequence[FaultRule], seed: int) -> None:
        self.rules = list(rules)
        self._matches = [0] * len(self.rules)
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> None:
        self.rules.append(rule)
        self._matches.append(0)

    def decide(self, op: str, endpoint_id: str | None, *, request_fault: bool = False) -> FaultRule | None:
        """The first rule that fires for this call of ``op`` on ``endpoint_id``, if any."""
        for index, rule in enumerate(self.rules):
            if (rule.kind in REQUEST_FAULTS) != request_fault:
                continue
            if rule.target not in (op, "any") or (rule.endpoint_id and rule.endpoint_id != endpoint_id):
                continue
            self._matches[index] += 1
            count = self._matches[index]
            if rule.first is not None:
                fired = count <= rule.first
            elif rule.every is not None:
                fired = count % rule.every == 0
            else:
                fired = self._rng.random() < (rule.rate or 0.0)
            if fired:
                return rule
        return None


class DroppedResponse(Response):
    """Announces a body with Content-Length, sends part of it, then aborts: the client sees a transport error."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"status": "IN_QU', "more_body": True})
        raise ConnectionAbortedError("emulator fault: drop_connection")


def fault_response(kind: str, request_id: str | None) -> Response:
    """The response of an HTTP fault (``slow_response`` and ``vanish`` are handled by the server)."""
    rid = {"x-fal-request-id": request_id or str(uuid.uuid4())}
    if kind == "rate_limit_429":
        return JSONResponse({"detail": "Rate limit exceeded. Please slow down and retry."}, 429, headers=rid)
    if kind.startswith("nginx_"):
        code = int(kind.rsplit("_", 1)[1])
        title = _NGINX_TITLES[code]
        html = (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        )
        return HTMLResponse(html, code)
    if kind == "runner_503":
        error_type = "runner_connection_refused"
        body = {"detail": "Could not connect to the runner: connection refused", "error_type": error_type}
        return JSONResponse(body, 503, headers={**rid, "X-Fal-Error-Type": error_type})
    if kind == "drop_connection":
        return DroppedResponse()
    raise ValueError(f"{kind} has no response of its own")
