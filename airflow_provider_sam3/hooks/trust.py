"""The trust boundary: which URLs the key may go to, and which request ids may name a request or a folder.

The provider trusts one host: the connection's queue host (``queue.fal.run`` by default; the emulator's
``127.0.0.1:<port>`` when that is the configured host), over https. Every URL a call with the key is about to use
(a reference's status, response and cancel URLs, and the URLs in fal's answer to a submit) is checked here first;
one naming another host, port or scheme, or carrying credentials of its own, is refused with a final error and the
key is not sent. Request ids arrive from fal's answers, XCom and templates: they are checked against the shape of
fal's ids, so that none can climb out of ``output_path`` or smuggle a path into a URL template.

Two hosts besides the queue host can see the key, both fal's own and only with fal's own queue host: fal-client's
failover from ``queue.fal.run`` to ``queue.falrun.com`` when the first is unreachable, and uploads to fal's storage
(``upload_problem``).

No network I/O and no heavy imports: pure string checks.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_provider_sam3.models.reference import RequestReference

__all__ = [
    "FAL_QUEUE_HOST",
    "FAL_STORAGE_URLS",
    "HOST_SHAPE",
    "MAX_REQUEST_ID_LENGTH",
    "REQUEST_ID_SHAPE",
    "TRUST_HELP",
    "URL_CHARACTERS",
    "check_queue_host",
    "check_reference",
    "check_request_id",
    "check_upload",
    "redact",
    "request_id_problem",
    "same_host",
    "split_host",
    "untrusted",
    "upload_problem",
    "url_problem",
]

MAX_REQUEST_ID_LENGTH = 128
"""fal's ids are UUIDs (36 characters); anything far longer is not one of them."""
REQUEST_ID_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""Letters, digits, ``-``, ``_`` and ``.``, starting with a letter or digit: fal's UUIDs, and any plain id fal might
use instead, but never a path separator, ``..``, a percent escape, a space or a control character."""
HOST_SHAPE = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$"
)
"""``host`` or ``host:port`` (a DNS name of ASCII labels, an IPv4 address, or a bracketed IPv6 literal)."""
URL_CHARACTERS = re.compile(r"^[\x21-\x7e]+$")
"""Printable ASCII without spaces: a URL with anything else is parsed differently by different parsers."""
TRUST_HELP = (
    "The provider sends the fal key only to its connection's queue host over https; if fal really moved, "
    "change the connection's host"
)


def untrusted(message: str, *, endpoint_id: str | None, request_id: str | None) -> Exception:
    from airflow_provider_sam3.exceptions import FalUntrustedUrlError

    return FalUntrustedUrlError(message, endpoint_id=endpoint_id, request_id=request_id)


def check_queue_host(host: str, source: str) -> str:
    """The configured queue host as ``host[:port]`` in lower case; refused (``InputValidationError``) when it is not
    one (a path, credentials, a scheme other than https, spaces)."""
    from airflow_provider_sam3.exceptions import InputValidationError

    text = host.strip()
    lowered = text.lower()
    if "://" in lowered:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "https":
            raise InputValidationError(
                source,
                f"{host!r} uses {scheme}://; fal's queue is reached over https only",
                allowed="a host name such as queue.fal.run, optionally with :port",
            )
        text = rest
    text = text.rstrip("/")
    if not HOST_SHAPE.match(text) or text.endswith("."):
        raise InputValidationError(
            source,
            f"{host!r} is not a host name (no path, credentials or spaces)",
            allowed="a host name such as queue.fal.run, optionally with :port",
        )
    port = _port_of(text)
    if port is not None and not 0 < port < 65536:
        raise InputValidationError(source, f"{host!r} has port {port}, outside 1-65535")
    return text.lower()


def _port_of(netloc: str) -> int | None:
    """The explicit port of ``host:port`` / ``[v6]:port``, else None."""
    tail = netloc.rsplit("]", 1)[-1] if netloc.startswith("[") else netloc
    if ":" in tail:
        return int(tail.rsplit(":", 1)[1])
    return None


def split_host(netloc: str) -> tuple[str, int]:
    """``(host, port)`` of a trusted ``host[:port]``; port 443 when none is given; IPv6 without brackets."""
    port = _port_of(netloc)
    host = netloc[: netloc.rfind(":")] if port is not None else netloc
    return host.strip("[]").lower(), port or 443


def same_host(netloc: str, queue_host: str) -> bool:
    """Whether a URL's ``netloc`` is exactly the queue host (its port, or 443 for both when absent)."""
    try:
        return split_host(netloc.lower()) == split_host(queue_host.lower())
    except ValueError:
        return False


def url_problem(url: object, queue_host: str) -> str | None:
    """Why ``url`` may not receive the key for ``queue_host``, or None when it may."""
    if not isinstance(url, str) or not url:
        return f"{_shown(url)} is not a URL"
    if not URL_CHARACTERS.match(url) or "\\" in url:
        return f"{_shown(url)} contains spaces, backslashes or characters outside printable ASCII"
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return f"{_shown(url)} cannot be parsed as a URL"
    if parts.scheme.lower() != "https":
        return f"{_shown(url)} does not use https (it uses {parts.scheme or 'no scheme'})"
    if "@" in netloc:
        return f"{_shown(url)} carries credentials in its address (user@host), which hides its real host"
    if not port_ok or not HOST_SHAPE.match(netloc) or not same_host(netloc, queue_host):
        return f"{_shown(url)} names host {netloc!r}, not the connection's queue host {queue_host!r}"
    if parts.fragment:
        return f"{_shown(url)} has a fragment, which fal's URLs never have"
    try:  # the parser that will send the request must agree with the one that checked it
        import httpx

        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").strip("[]").lower()  # as sent (punycode), not decoded
        if (parsed.scheme, host, parsed.port or 443) != ("https", *split_host(queue_host)):
            return f"{_shown(url)} is read by the HTTP client as host {host!r}, not {queue_host!r}"
    except ImportError:  # pragma: no cover - httpx comes with fal-client
        pass
    except Exception:  # noqa: BLE001 - httpx.InvalidURL and friends
        return f"{_shown(url)} cannot be parsed as a URL"
    return None


FAL_STORAGE_URLS = ("https://rest.fal.ai", "https://v3.fal.media")
"""fal's own storage endpoints (fal-client's ``REST_URL`` and ``CDN_URL``), trusted only with fal's own queue."""
FAL_QUEUE_HOST = "queue.fal.run"


def upload_problem(queue_host: str) -> str | None:
    """Why an upload (which sends the key to fal-client's ``REST_URL``/``CDN_URL``) may not run with ``queue_host``:
    those hosts must be fal's own with fal's own queue, or the queue host itself (the emulator)."""
    from airflow_provider_sam3.hooks.fal_client_internals import storage_urls

    for name, where in storage_urls().items():
        url = where.rstrip("/")
        if url_problem(url + "/", queue_host) is None:
            continue
        if queue_host == FAL_QUEUE_HOST and url in FAL_STORAGE_URLS:
            continue
        return (
            f"uploads go to fal_client's {name} {url}, which is neither the connection's queue host "
            f"{queue_host!r} nor fal's own storage used with fal's own queue"
        )
    return None


def check_upload(queue_host: str) -> None:
    """Refuse an upload (``FalUntrustedUrlError``) unless fal-client's storage hosts may see the key with
    ``queue_host``: only with fal's own queue (or the emulator's)."""
    problem = upload_problem(queue_host)
    if problem:
        raise untrusted(
            f"upload refused: {problem}; the fal key was not sent. Give images up to 4 MiB (sent inline as data "
            "URIs), or host larger files yourself and pass their https URL",
            endpoint_id=None,
            request_id=None,
        )


def check_reference(
    ref: RequestReference,
    queue_host: str,
    *,
    names: tuple[str, ...] | None = None,
    where: str = "the request reference",
    note: str = "",
) -> None:
    """Refuse (``FalUntrustedUrlError``) a reference whose request id or URLs the key must not follow.

    ``where`` names the reference's origin in the message; ``note`` is appended (e.g. that fal may bill it).
    """
    problem = request_id_problem(ref.request_id)
    if problem:
        raise untrusted(
            f"{where} has an unusable request id: {problem}; nothing was sent{note}",
            endpoint_id=ref.endpoint_id,
            request_id=None,
        )
    for name in names or ("status_url", "response_url", "cancel_url"):
        problem = url_problem(getattr(ref, name), queue_host)
        if problem:
            origin = "" if note else (", or check where the reference came from (a template, XCom or dag_run.conf)")
            raise untrusted(
                f"{where} has an untrusted {name}: {problem}; the fal key was not sent{note}. {TRUST_HELP}{origin}",
                endpoint_id=ref.endpoint_id,
                request_id=ref.request_id,
            )


def request_id_problem(request_id: object) -> str | None:
    """Why ``request_id`` is not a fal request id (it would name a path, or break a URL), or None."""
    if not isinstance(request_id, str):
        return f"{_shown(request_id)} is not a string"
    if not request_id:
        return "it is empty"
    if len(request_id) > MAX_REQUEST_ID_LENGTH:
        return f"it is {len(request_id)} characters long, more than {MAX_REQUEST_ID_LENGTH}"
    if not REQUEST_ID_SHAPE.match(request_id) or ".." in request_id:
        return (
            f"{_shown(request_id)} is not a fal request id (letters, digits, '-', '_' and '.'; no '/', '\\', "
            "'..', '%', spaces or control characters)"
        )
    return None


def check_request_id(request_id: object, field: str = "request_id") -> str:
    """``request_id`` when it is a fal request id; else ``InputValidationError`` naming ``field``."""
    problem = request_id_problem(request_id)
    if problem:
        from airflow_provider_sam3.exceptions import InputValidationError

        raise InputValidationError(field, problem, allowed="a fal request id such as a UUID")
    return request_id  # type: ignore[return-value]


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)[^/?#]*@")


def redact(url: str) -> str:
    """``url`` with any credentials (``user:password@``) replaced by ``***@``."""
    return _USERINFO.sub(r"\1***@", url)


def _shown(value: object) -> str:
    text = repr(redact(value) if isinstance(value, str) else value)
    return text if len(text) <= 120 else text[:117] + "..."
