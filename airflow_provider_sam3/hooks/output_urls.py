"""Which output URLs may be fetched, so that a result cannot turn the worker into a proxy: each check written once,
used before a download's request and again when its connection is opened (``hooks.downloads``).

A result's URLs come from fal's answer, which the provider does not control. A URL is fetched only when it is
https, with no credentials in it, and its host is the connection's queue host (the emulator serves its media there),
a host the connection's extra ``media_hosts`` lists, or a host whose every address is public: loopback, private,
link-local, shared, multicast and reserved addresses are refused (``http://2130706433/``, ``localhost``,
``169.254.169.254``, ``[::1]`` ...). The check is made again when the connection is opened, against the address
actually connected to, so a name that resolves differently the second time (DNS rebinding) is refused too. Behind an
https proxy (``HTTPS_PROXY``) the proxy connects: a name that resolves locally is still checked, one that does not is
left to the proxy. A refusal is ``FalOutputRefusedError``: final, and truthful about why.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_sam3.exceptions import FalOutputRefusedError, FalTransientError
from airflow_provider_sam3.hooks.trust import HOST_SHAPE, URL_CHARACTERS, redact, same_host, split_host

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.settings import FalSettings

__all__ = [
    "aconnect_address",
    "address_problem",
    "behind_proxy",
    "check_async",
    "check_sync",
    "connect_address",
    "refused",
    "resolution_problem",
    "short",
    "trusted_host",
    "url_target",
]


def short(url: str) -> str:
    """A URL shortened for messages, without its query string (media URLs may be presigned) or credentials."""
    text = redact(url.split("?", 1)[0])
    return text if len(text) <= 100 else text[:97] + "..."


def refused(url: str, why: str) -> FalOutputRefusedError:
    return FalOutputRefusedError(
        f"output file {short(url)} was not fetched: {why}. Outputs are fetched only over https from public "
        "addresses, the connection's queue host and the hosts in its extra media_hosts (add a host there if it is "
        "yours); the result was not stored"
    )


def trusted_host(host: str, port: int, settings: FalSettings) -> bool:
    """The queue host and the ``media_hosts`` allow-list may resolve to private addresses (the emulator does)."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return any(same_host(netloc, allowed) for allowed in (settings.queue_host, *settings.media_hosts))


def address_problem(address: str) -> str | None:
    """Why a resolved address may not be fetched from, or None for a public address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return f"it resolves to the loopback address {ip}"
    if ip.is_link_local:
        return f"it resolves to the link-local address {ip} (cloud metadata services live there)"
    if ip.is_private or ip.is_unspecified or ip.is_reserved or ip.is_multicast or not ip.is_global:
        return f"it resolves to the private or reserved address {ip}"
    return None


def url_target(url: str) -> tuple[str, int]:
    """``(host, port)`` of an output URL, after the checks that need no resolution; raises ``refused``."""
    if not URL_CHARACTERS.match(url) or "\\" in url:
        raise refused(url, "its URL contains spaces, backslashes or characters outside printable ASCII")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        raise refused(url, "its URL cannot be parsed") from None
    if parts.scheme.lower() != "https":
        raise refused(url, f"it uses {parts.scheme or 'no'}:// (only https and inline data: URIs are accepted)")
    if "@" in parts.netloc:
        raise refused(url, "its address carries credentials (user@host), which hides its real host")
    if not parts.netloc or not HOST_SHAPE.match(parts.netloc):
        raise refused(url, f"its host {parts.netloc!r} is not a host name")
    host, _ = split_host(parts.netloc)
    return host, port


def resolution_problem(host: str, port: int, infos: list[Any]) -> str | None:
    """Why the addresses ``host`` resolved to may not be fetched from, or None."""
    if not infos:
        return f"host {host!r} resolves to no address"
    for info in infos:
        problem = address_problem(str(info[4][0]))
        if problem:
            return f"host {host!r} is not allowed: {problem}"
    return None


def _checked_address(url: str, host: str, port: int, infos: list[Any]) -> str:
    """The first address ``host`` resolved to, once every one of them is checked public; else ``refused(url)``."""
    problem = resolution_problem(host, port, infos)
    if problem:
        raise refused(url, problem)
    return str(infos[0][4][0])


def connect_address(host: str, port: int, settings: FalSettings, url: str) -> str:
    """Where to connect for ``url``: ``host`` itself when trusted, else its first address once all it resolves to
    (blocking) are public. Raises ``refused``, or ``socket.gaierror`` when the name does not resolve."""
    if trusted_host(host, port, settings):
        return host
    return _checked_address(url, host, port, socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))


async def aconnect_address(host: str, port: int, settings: FalSettings, url: str) -> str:
    """``connect_address`` without blocking the event loop."""
    import asyncio

    if trusted_host(host, port, settings):
        return host
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _checked_address(url, host, port, infos)


def check_sync(url: str, settings: FalSettings) -> None:
    """Refuse ``url`` unless it may be fetched (resolves its host; blocking)."""
    host, port = url_target(url)
    try:
        connect_address(host, port, settings, url)
    except (socket.gaierror, UnicodeError) as error:
        _unresolved(url, host, error)


async def check_async(url: str, settings: FalSettings) -> None:
    """``check_sync`` without blocking the event loop."""
    host, port = url_target(url)
    try:
        await aconnect_address(host, port, settings, url)
    except (socket.gaierror, UnicodeError) as error:
        _unresolved(url, host, error)


def _unresolved(url: str, host: str, error: Exception) -> None:
    """A name that does not resolve: left to the proxy behind an https proxy (only it may resolve public names; it
    connects, not this worker), else a transient failure."""
    if behind_proxy():
        return
    raise FalTransientError(
        f"output file {short(url)} could not be fetched: host {host!r} does not resolve ({error})", retryable=True
    ) from None


def behind_proxy() -> bool:
    """With an https proxy the connection goes to the proxy, whose address is the network's business."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return bool(proxies.get("https") or proxies.get("all"))
