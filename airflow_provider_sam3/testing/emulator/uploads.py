"""fal's storage as fal-client 1.0.x speaks it: an upload token, single uploads (``/files/upload``) and multipart
uploads above fal-client's 100 MiB threshold (create, one PUT per part answered with an ETag, complete). Every
stored upload is counted (``uploads`` in the counters) and served at the URL it returned, like a hosted input."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from airflow_provider_sam3.testing.emulator.media_store import INPUTS_PREFIX

if TYPE_CHECKING:
    from airflow_provider_sam3.testing.emulator.server import EmulatorCore

__all__ = ["PendingUpload", "UPLOAD_TOKEN_TYPE", "UploadRoutes"]

UPLOAD_TOKEN_TYPE = "Bearer"


@dataclass
class PendingUpload:
    """A multipart upload between its create and its complete."""

    token: str
    file_name: str
    content_type: str
    parts: dict[int, bytes] = field(default_factory=dict)


class UploadRoutes:
    """``/storage/auth/token``, ``/files/upload``, ``/files/upload/multipart`` and its part and complete calls."""

    def __init__(self, core: EmulatorCore, auth_failure: Any) -> None:
        self.core = core
        self.auth_failure = auth_failure
        self.pending: dict[str, PendingUpload] = core.pending_uploads

    async def token(self, request: Request) -> Response:
        failure = self.auth_failure(request)
        if failure is not None:
            return failure
        token = secrets.token_urlsafe(16)
        self.core.upload_tokens.add(token)
        expires = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
        return JSONResponse(
            {"token": token, "token_type": UPLOAD_TOKEN_TYPE, "base_url": self.core.base_url, "expires_at": expires}
        )

    def _refused(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != UPLOAD_TOKEN_TYPE or token not in self.core.upload_tokens:
            return JSONResponse({"detail": "Invalid upload token"}, 401)
        return None

    def _stored(self, data: bytes, name: str, content_type: str, token: str | None = None) -> str:
        self.core.counters.uploads += 1
        self.core.counters.upload_bytes += len(data)
        return self.core.media.put(data, name, content_type, ttl_s=None, prefix=INPUTS_PREFIX, token=token)

    async def upload(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        data = await request.body()
        name = request.headers.get("x-fal-file-name") or "upload.bin"
        content_type = request.headers.get("content-type", "application/octet-stream")
        return JSONResponse({"access_url": self._stored(data, name, content_type)})

    async def create_multipart(self, request: Request) -> Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        upload_id = secrets.token_urlsafe(12)
        pending = PendingUpload(
            token=secrets.token_urlsafe(12),
            file_name=request.headers.get("x-fal-file-name") or "upload.bin",
            content_type=request.headers.get("content-type", "application/octet-stream"),
        )
        self.pending[upload_id] = pending
        access_url = f"{self.core.base_url}/{INPUTS_PREFIX}/{pending.token}/{quote(pending.file_name)}"
        return JSONResponse({"access_url": access_url, "uploadId": upload_id})

    def _pending(self, request: Request) -> tuple[PendingUpload | None, Response]:
        """The multipart upload a part or complete call names, or the answer refusing the call."""
        refused = self._refused(request)
        if refused is not None:
            return None, refused
        pending = self.pending.get(request.path_params["upload_id"])
        if pending is None or pending.token != request.path_params["token"]:
            return None, JSONResponse({"detail": "Unknown multipart upload"}, 404)
        return pending, Response(status_code=200)

    async def put_part(self, request: Request) -> Response:
        pending, refused = self._pending(request)
        if pending is None:
            return refused
        data = await request.body()
        pending.parts[int(request.path_params["part_number"])] = data
        return Response(status_code=200, headers={"etag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def complete(self, request: Request) -> Response:
        pending, refused = self._pending(request)
        if pending is None:
            return refused
        listed = [int(part["partNumber"]) for part in (await request.json()).get("parts", [])]
        if sorted(listed) != sorted(pending.parts) or not listed:
            return JSONResponse({"detail": f"parts {sorted(listed)} do not match those uploaded"}, 400)
        data = b"".join(pending.parts[number] for number in sorted(listed))
        del self.pending[request.path_params["upload_id"]]
        self._stored(data, pending.file_name, pending.content_type, token=pending.token)
        return JSONResponse({"status": "ok"})
