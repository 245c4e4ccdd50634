"""What an operator sends: a validated request body with its fingerprint, and an image argument as fal takes it.

Split from ``operators/queue.py``; the typed operators and the generic one share it. ``prepare_fal_request`` is
what ``FalQueueOperator`` sends for an ``endpoint_id`` and ``arguments``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sam3.endpoints import Endpoint
    from airflow_provider_sam3.models.submit_options import SubmitOptions

__all__ = [
    "DEFAULT_MAX_VIDEO_BYTES",
    "ENDPOINT_ID_SHAPE",
    "PLACEHOLDER_IMAGE_URL",
    "PLACEHOLDER_VIDEO_URL",
    "PendingUpload",
    "PreparedRequest",
    "SAM3_APP_IDS",
    "VIDEO_TYPES",
    "prepare_fal_request",
    "prepare_image_argument",
    "read_local_video",
    "upload_pending",
]

ENDPOINT_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)+$")
"""``owner/app`` or ``owner/app/path``: what fal-client turns into a queue URL."""
SAM3_APP_IDS = ("fal-ai/sam-3", "fal-ai/sam-3-1")
"""fal apps every endpoint of which is in the registry: an unknown id under them is a typo, not a new endpoint."""


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request body, ready to submit; ``image`` describes the input image for the XCom document;
    ``options`` are the checked queue options (not part of the fingerprint: they do not change the result).
    ``stable_fields`` replace body fields in the fingerprint whose value changes from try to try for the same
    input (a local video's storage URL: its content hash stands for it, so a retry reattaches). ``pending``: local
    content still to upload to fal's storage (``uploaded``), done only once the request is known to be sent (after
    the result cache was asked); a placeholder stands in the body until then."""

    endpoint_id: str
    body: dict[str, Any]
    image: dict[str, Any] | None = None
    options: SubmitOptions | None = None
    stable_fields: dict[str, str] | None = None
    pending: tuple[PendingUpload, ...] = ()
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        identity = {**self.body, **(self.stable_fields or {})}
        digest = hashlib.sha256(json.dumps([self.endpoint_id, identity], sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "fingerprint", digest[:32])

    @classmethod
    def with_uploads(
        cls, endpoint_id: str, body: dict[str, Any], image: dict[str, Any] | None, pending: list[PendingUpload]
    ) -> PreparedRequest:
        """A request whose ``pending`` uploads are still to be made: their content hashes stand in the fingerprint."""
        stable = {upload.field: upload.stable_value() for upload in pending} or None
        return cls(endpoint_id, body, image, stable_fields=stable, pending=tuple(pending))

    def uploaded(self, hook: Any, log: Any) -> PreparedRequest:
        """This request with its pending uploads made and their URLs in the body (the fingerprint is unchanged)."""
        if not self.pending:
            return self
        body = dict(self.body)
        upload_pending(hook, body, list(self.pending), log)
        return dataclasses.replace(self, body=body, pending=())


PLACEHOLDER_IMAGE_URL = "https://placeholder.invalid/image.png"
"""Stands for a large local image while the request's other fields are checked; the upload comes last."""


@dataclass(frozen=True)
class PendingUpload:
    """Local content too large to inline, uploaded to fal's storage once everything else was checked."""

    field: str
    data: bytes
    content_type: str
    file_name: str

    def stable_value(self) -> str:
        """What stands for the upload's URL in the request's fingerprint: the same content on every try."""
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


def prepare_image_argument(
    endpoint: Any, source: Any, field: str, log: Any, conn_id: str | None = None
) -> tuple[str, dict[str, Any], PendingUpload | None]:
    """An image as fal takes it (sniffed, upright; local content as a data URI, or, above the batch's
    ``DEFAULT_UPLOAD_ABOVE_BYTES``, a pending upload to fal's storage while a placeholder stands in the body) and
    what the XCom document says of it. Local files go through ``guards.files`` (regular files within
    ``DEFAULT_MAX_INPUT_BYTES``). fal's RLE output carries no size, so a URL image's size is read from its header
    for RLE endpoints; that probe never reaches a private or loopback address other than the connection's queue host
    or media hosts."""
    from airflow_provider_sam3.batch.inputs import DEFAULT_UPLOAD_ABOVE_BYTES
    from airflow_provider_sam3.media.inputs import prepare_image

    prepared = prepare_image(source, field=field, inline_limit=DEFAULT_UPLOAD_ABOVE_BYTES)
    image = {"source": prepared.source, "width": prepared.width, "height": prepared.height}
    pending = None
    if prepared.upload is not None:
        data, content_type = prepared.upload
        name = os.path.basename(prepared.source.rstrip("/")) or "image"
        pending = PendingUpload(field="image_url", data=data, content_type=content_type, file_name=name)
    if prepared.width is None and "rle" in endpoint.output_model.model_fields:
        from airflow_provider_sam3.media.probe import image_size_at_url

        try:
            image["width"], image["height"] = image_size_at_url(prepared.url, check=_probe_check(conn_id))
            log.info("Read the size of %s from its header: %dx%d", prepared.source, image["width"], image["height"])
        except ValueError as error:
            log.warning(
                "Could not read the size of %s (%s); the result's RLE masks will need the size given to "
                "mask_arrays(size=...)",
                prepared.source,
                error,
            )
    return (PLACEHOLDER_IMAGE_URL if pending else prepared.url), image, pending


def upload_pending(hook: Any, body: dict[str, Any], pending: list[PendingUpload], log: Any) -> dict[str, str]:
    """Upload what was too large to inline (last: nothing is uploaded for a request refused before) and put its
    URL in ``body``; returns the fingerprint's stand-ins for those URLs."""
    stable = {}
    for upload in pending:
        body[upload.field] = hook.upload(upload.data, upload.content_type, upload.file_name)
        stable[upload.field] = upload.stable_value()
        log.info(
            "Uploaded %s (%d bytes) to fal's storage; the request carries its URL", upload.file_name, len(upload.data)
        )
    return stable


def _probe_check(conn_id: str | None) -> Any:
    """The address check of the connection ``conn_id`` (the default one when None), resolved on first use."""
    from airflow_provider_sam3.hooks.fal import FalHook

    def check(url: str) -> None:
        from airflow_provider_sam3.hooks.downloads import probe_check

        hook = FalHook(conn_id) if conn_id else FalHook()
        probe_check(hook.get_settings())(url)

    return check


DEFAULT_MAX_VIDEO_BYTES = 512 * 1024 * 1024
"""Largest local video uploaded to fal's storage (read into memory once; fal-client sends it in 10 MiB parts)."""
PLACEHOLDER_VIDEO_URL = "https://placeholder.invalid/video.mp4"
VIDEO_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm", ".avi": "video/x-msvideo"}


def read_local_video(source: Any, field: str) -> PendingUpload | None:
    """The upload of a video fal cannot reach (a local file or an ObjectStoragePath), checked to be a regular file
    within ``DEFAULT_MAX_VIDEO_BYTES``; None for an http(s) URL or a data URI, which pass through. A video is never
    inlined as a data URI."""
    from airflow_provider_sam3.exceptions import InputValidationError
    from airflow_provider_sam3.guards.files import read_regular_file

    if isinstance(source, os.PathLike) and not hasattr(source, "protocol"):
        source = os.fspath(source)
    if isinstance(source, str):
        text = source.strip()
        if text[:8].lower() == "https://" or text[:7].lower() == "http://" or text[:5].lower() == "data:":
            return None
        if text.startswith("file://"):
            text = text[len("file://") :]
        if "://" in text or not os.path.isabs(os.path.expanduser(text)):
            raise InputValidationError(
                field,
                f"{text[:120]!r} is neither a URL fal can fetch nor an absolute local path; for object storage pass "
                "an ObjectStoragePath",
                allowed="an http(s) URL, a data: URI, an absolute path or an ObjectStoragePath",
            )
        source = text
    elif not callable(getattr(source, "open", None)):
        raise InputValidationError(field, f"got {type(source).__name__}, which is not a video")
    data = read_regular_file(source, field, DEFAULT_MAX_VIDEO_BYTES)
    name = os.path.basename(str(source).rstrip("/")) or "video.mp4"
    content_type = VIDEO_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
    return PendingUpload(field="video_url", data=data, content_type=content_type, file_name=name)


def prepare_fal_request(
    endpoint_id: Any, arguments: Any, *, output_path: Any, conn_id: str, log: Any
) -> PreparedRequest:
    """The request for any fal endpoint: a SAM 3 one validated with the registry's model (its image prepared,
    uploaded when it is sent: ``PreparedRequest.uploaded``), any other sent as given. Raises
    ``InputValidationError`` before anything is sent."""
    from airflow_provider_sam3.endpoints import ENDPOINTS

    _check_endpoint_id(endpoint_id)
    endpoint = ENDPOINTS.get(endpoint_id)
    if endpoint is not None:
        return _sam3_request(endpoint, arguments, conn_id=conn_id, log=log)
    from airflow_provider_sam3.exceptions import InputValidationError

    if output_path is not None:
        raise InputValidationError(
            "output_path",
            f"works for the SAM 3 endpoints this provider knows; it cannot tell which parts of "
            f"{endpoint_id}'s output are files. Copy them in a downstream task, or leave output_path unset",
        )
    try:
        body = json.loads(json.dumps(arguments))
    except (TypeError, ValueError) as error:
        raise InputValidationError("arguments", f"must be JSON-serializable ({error})") from None
    if not isinstance(body, dict):
        raise InputValidationError("arguments", f"must be a mapping, not {type(body).__name__}")
    return PreparedRequest(endpoint_id, body)


def _check_endpoint_id(endpoint_id: Any) -> None:
    """A fal endpoint id; under a SAM 3 app, one the registry knows (else the closest one is named)."""
    from airflow_provider_sam3.endpoints import ENDPOINTS, get_endpoint
    from airflow_provider_sam3.exceptions import InputValidationError

    if not endpoint_id or not isinstance(endpoint_id, str):
        raise InputValidationError("endpoint_id", "is required, e.g. 'fal-ai/sam-3/image'")
    if not ENDPOINT_ID_SHAPE.match(endpoint_id):
        raise InputValidationError(
            "endpoint_id",
            f"{endpoint_id!r} is not a fal endpoint id",
            allowed="'owner/app' or 'owner/app/path' (letters, digits, '.', '_', '-'), e.g. 'fal-ai/sam-3/image'",
        )
    if endpoint_id not in ENDPOINTS and "/".join(endpoint_id.split("/")[:2]) in SAM3_APP_IDS:
        get_endpoint(endpoint_id)  # raises, naming the closest SAM 3 endpoint and every known one


def _sam3_request(endpoint: Endpoint, arguments: Any, *, conn_id: str, log: Any) -> PreparedRequest:
    from airflow_provider_sam3.models.geometry import check_prompt_geometry

    arguments, image, upload = dict(arguments) if isinstance(arguments, dict) else arguments, None, None
    if isinstance(arguments, dict) and arguments.get("image_url") is not None:
        arguments["image_url"], image, upload = prepare_image_argument(
            endpoint, arguments["image_url"], "image_url", log, conn_id
        )
    body = endpoint.validate_input(arguments).to_request()
    check_prompt_geometry(body, image)
    return PreparedRequest.with_uploads(endpoint.endpoint_id, body, image, [upload] if upload else [])
