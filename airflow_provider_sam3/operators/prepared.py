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
    ``options`` are the checked queue options (not part of the fingerprint: they do not change the result)."""

    endpoint_id: str
    body: dict[str, Any]
    image: dict[str, Any] | None = None
    options: SubmitOptions | None = None
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(json.dumps([self.endpoint_id, self.body], sort_keys=True).encode()).hexdigest()
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
