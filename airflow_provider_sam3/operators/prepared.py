"""What an operator sends: a validated request body with its fingerprint, and an image argument as fal takes it.

Split from ``operators/queue.py``; the typed operators and the generic one share it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_sam3.models.submit_options import SubmitOptions


@dataclass(frozen=True)
class PreparedRequest:
    """A validated request body, ready to submit; ``image`` describes the input image for the XCom document;
    ``options`` are the checked queue options (not part of the fingerprint: they do not change the result).
    ``stable_fields`` replace body fields in the fingerprint whose value changes from try to try for the same
    input (a local video's storage URL: its content hash stands for it, so a retry reattaches)."""

    endpoint_id: str
    body: dict[str, Any]
    image: dict[str, Any] | None = None
    options: SubmitOptions | None = None
    stable_fields: dict[str, str] | None = None
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        identity = {**self.body, **(self.stable_fields or {})}
        digest = hashlib.sha256(json.dumps([self.endpoint_id, identity], sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "fingerprint", digest[:32])


def prepare_image_argument(
    endpoint: Any, source: Any, field: str, log: Any, conn_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    """An image as fal takes it (sniffed, upright, local content as a data URI) and what the XCom document says of
    it. fal's RLE output carries no size, so a URL image's size is read from its header for RLE endpoints; that
    probe never reaches a private or loopback address other than the connection's queue host or media hosts."""
    from airflow_provider_sam3.media.inputs import prepare_image

    prepared = prepare_image(source, field=field)
    image = {"source": prepared.source, "width": prepared.width, "height": prepared.height}
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
    return prepared.url, image


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


def read_local_video(source: Any, field: str) -> tuple[bytes, str, str] | None:
    """``(bytes, file name, content type)`` of a video fal cannot reach (a local file or an ObjectStoragePath),
    checked to be a regular file within ``DEFAULT_MAX_VIDEO_BYTES``; None for an http(s) URL or a data URI, which
    pass through. The caller uploads it to fal's storage: a video is never inlined as a data URI."""
    import os

    from airflow_provider_sam3.batch.inputs import InputLimits, read_regular_file
    from airflow_provider_sam3.exceptions import InputValidationError

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
    data = read_regular_file(source, field, InputLimits(max_input_bytes=DEFAULT_MAX_VIDEO_BYTES))
    name = os.path.basename(str(source).rstrip("/")) or "video.mp4"
    return data, name, VIDEO_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
