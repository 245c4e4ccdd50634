"""The size of an image at an http(s) URL, read from the start of the file (fal's RLE output carries no size)."""

from __future__ import annotations

from collections.abc import Callable

from PIL import ImageFile

__all__ = ["MAX_REDIRECTS", "PROBE_MAX_BYTES", "image_size_at_url"]

MAX_REDIRECTS = 5
PROBE_MAX_BYTES = 1 << 20
"""Headers sit in the first few KB (JPEG: after its EXIF block, rarely beyond 64 KB); stop reading after this much."""


def image_size_at_url(
    url: str, *, timeout: float = 10.0, max_bytes: int = PROBE_MAX_BYTES, check: Callable[[str], None] | None = None
) -> tuple[int, int]:
    """``(width, height)`` of the image at ``url``, read from its first bytes without downloading the rest.

    The size is as stored: an EXIF orientation that swaps width and height is not applied (fal's masks follow
    the file as fal decodes it). Raises ``ValueError`` saying why when the size cannot be read. ``check(url)``, when
    given, is called before the first request and before following each redirect, and raises ``ValueError`` to
    refuse a URL (the operators refuse private and loopback addresses: a templated image URL must not make the
    worker probe its own network).
    """
    import httpx

    parser = ImageFile.Parser()
    read = 0
    try:
        with httpx.Client(timeout=timeout, follow_redirects=check is None) as client:
            for _ in range(MAX_REDIRECTS + 1):
                if check is not None:
                    check(url)
                with client.stream("GET", url) as response:
                    if response.is_redirect and check is not None:
                        url = str(response.url.join(response.headers.get("location", "")))
                        continue
                    if response.status_code != 200:
                        raise ValueError(f"the server answered HTTP {response.status_code}")
                    for chunk in response.iter_bytes():
                        parser.feed(chunk)
                        read += len(chunk)
                        if parser.image is not None:
                            return parser.image.size
                        if read >= max_bytes:
                            break
                    break
            else:
                raise ValueError(f"it redirected more than {MAX_REDIRECTS} times")
    except httpx.HTTPError as error:  # the URL may be presigned: its query never reaches a log line
        raise ValueError(f"{type(error).__name__}: {str(error).replace(url, '<the image URL>')}") from None
    except OSError as error:  # Pillow: not an image it can parse
        raise ValueError(f"its content is not an image ({error})") from None
    raise ValueError(f"no image header in its first {read:,} bytes")
