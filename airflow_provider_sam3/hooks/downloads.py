"""Fetching the output files fal's results name, without letting a result turn the worker into a proxy.

Which URLs may be fetched is ``hooks.output_urls``' to say, checked before each request and, through the clients
built here, again against the address each connection is opened to. Each redirect is followed by hand and checked the
same way (at most ``MAX_REDIRECTS``); an inline ``data:`` URI is decoded here. The body is at most the connection's
``max_output_bytes`` (default 512 MiB): ``Content-Length`` is checked first, then the bytes are counted while they
stream (decoded, so a compressed bomb is caught as well). The API key is never sent with these requests: fal's media
URLs are public.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from airflow_provider_sam3.exceptions import (
    FalOutputRefusedError,
    FalRequestError,
    FalResultUnavailableError,
    FalTransientError,
)
from airflow_provider_sam3.hooks.connection import FalConnection
from airflow_provider_sam3.hooks.errors import certificate_error
from airflow_provider_sam3.hooks.output_urls import (
    aconnect_address,
    behind_proxy,
    check_async,
    check_sync,
    connect_address,
    refused,
    short,
)

if TYPE_CHECKING:
    from airflow_provider_sam3.hooks.settings import FalSettings

__all__ = [
    "BUDGET_HELP",
    "CHUNK_BYTES",
    "DOWNLOAD_CONNECTIONS",
    "MAX_REDIRECTS",
    "OutputDownloads",
    "afetch",
    "async_client",
    "data_uri_bytes",
    "fetch",
    "probe_check",
    "sync_client",
]

DOWNLOAD_CONNECTIONS = 8
"""Connections one hook keeps for output files: more only adds pool bookkeeping (measured on loopback)."""
MAX_REDIRECTS = 5
CHUNK_BYTES = 1024 * 1024
BUDGET_HELP = "raise the fal connection's extra max_output_bytes if such outputs are expected"


def probe_check(settings: FalSettings) -> Callable[[str], None]:
    """A check for the image-size probe (``media.probe``): http(s) only, and no private or loopback address
    unless it is the queue host or a ``media_hosts`` entry. Raises ``ValueError`` (the probe is optional: the
    operator logs why and goes on without the size)."""

    def check(url: str) -> None:
        target = url if not url[:7].lower() == "http://" else "https://" + url[7:]
        try:
            check_sync(target, settings)
        except (FalOutputRefusedError, FalTransientError) as error:
            raise ValueError(str(error.detail).replace("output file", "image", 1)) from None

    return check


# ------------------------------------------------------------------ the HTTP clients


class _SyncGuard:
    """httpcore network backend checking the address it connects to (against DNS rebinding)."""

    def __init__(self, inner: Any, settings: FalSettings) -> None:
        self.inner, self.settings = inner, settings

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        return self.inner.connect_tcp(
            connect_address(host, port, self.settings, f"https://{host}:{port}/"),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _AsyncGuard:
    def __init__(self, inner: Any, settings: FalSettings) -> None:
        self.inner, self.settings = inner, settings

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        return await self.inner.connect_tcp(
            await aconnect_address(host, port, self.settings, f"https://{host}:{port}/"),
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _guard(client: Any, settings: FalSettings, guard_cls: type) -> Any:
    """Install the connect-time check on ``client``'s connection pool (skipped behind a proxy)."""
    if behind_proxy():
        return client
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if pool is not None and backend is not None:
        pool._network_backend = guard_cls(backend, settings)
    return client


def sync_client(settings: FalSettings) -> Any:
    import httpx

    return _guard(httpx.Client(timeout=settings.request_timeout, follow_redirects=False), settings, _SyncGuard)


def async_client(settings: FalSettings, max_connections: int) -> Any:
    import httpx

    client = httpx.AsyncClient(
        timeout=settings.request_timeout, follow_redirects=False, limits=httpx.Limits(max_connections=max_connections)
    )
    return _guard(client, settings, _AsyncGuard)


# ------------------------------------------------------------------ one download


def data_uri_bytes(url: str, settings: FalSettings, field: str = "url") -> bytes:
    """An inline output, decoded, within the size cap (checked on the encoded length first)."""
    from airflow_provider_sam3.media.inputs import parse_data_uri

    cap = settings.max_output_bytes
    if (len(url) - url.find(",") - 1) * 3 // 4 > cap + 3:
        raise refused("data:...", f"the inline data is larger than the {cap:,}-byte cap; {BUDGET_HELP}")
    data = parse_data_uri(url, field=field)[1]
    if len(data) > cap:
        raise refused("data:...", f"the inline data is {len(data):,} bytes, above the {cap:,}-byte cap; {BUDGET_HELP}")
    return data


def _status_problem(response: Any, url: str) -> None:
    code = response.status_code
    if code in (403, 404, 410):
        raise FalResultUnavailableError(
            f"output file {short(url)} is gone (HTTP {code}): fal's media URLs expire; "
            "set output_path so outputs are copied as soon as the request completes"
        )
    if code >= 400:
        raise FalTransientError(f"download of {short(url)} failed with HTTP {code}", retryable=code >= 500)


def _declared_length(response: Any, url: str, cap: int) -> None:
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > cap:
        raise refused(url, f"it is {int(length):,} bytes, above the {cap:,}-byte cap per output; {BUDGET_HELP}")


def _next_url(response: Any, url: str) -> str:
    location = response.headers.get("location")
    if not location:
        raise refused(url, f"it answered a redirect (HTTP {response.status_code}) without a Location")
    return str(response.url.join(location))


def _transport_error(error: Exception, url: str) -> FalRequestError:
    tls = certificate_error(error, f"download of {short(url)}")
    if tls is not None:
        return tls
    return FalTransientError(
        f"download of {short(url)} failed: {type(error).__name__}: {error}; it is retried, "
        "and if it persists check the worker's network",
        retryable=True,
    )


def fetch(client: Any, url: str, settings: FalSettings, sink: Callable[[bytes], None]) -> str | None:
    """Stream ``url`` into ``sink`` chunk by chunk, following and checking redirects; returns the content type."""
    import httpx

    cap = settings.max_output_bytes
    for _ in range(MAX_REDIRECTS + 1):
        check_sync(url, settings)
        try:
            with client.stream("GET", url) as response:
                if response.is_redirect:
                    url = _next_url(response, url)
                    continue
                _status_problem(response, url)
                _declared_length(response, url, cap)
                total = 0
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    total += len(chunk)
                    if total > cap:
                        raise refused(url, f"it sent more than the {cap:,}-byte cap per output; {BUDGET_HELP}")
                    sink(chunk)
                return response.headers.get("content-type")
        except (httpx.HTTPError, OSError) as error:  # OSError: a name that stopped resolving at connect
            raise _transport_error(error, url) from error
    raise refused(url, f"it redirected more than {MAX_REDIRECTS} times")


async def afetch(client: Any, url: str, settings: FalSettings) -> bytes:
    """Async ``fetch`` into memory (the batch keeps a result's files until it writes them), within the cap."""
    import httpx

    cap = settings.max_output_bytes
    for _ in range(MAX_REDIRECTS + 1):
        await check_async(url, settings)
        try:
            async with client.stream("GET", url) as response:
                if response.is_redirect:
                    url = _next_url(response, url)
                    continue
                _status_problem(response, url)
                _declared_length(response, url, cap)
                data = bytearray()
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    if len(data) + len(chunk) > cap:
                        raise refused(url, f"it sent more than the {cap:,}-byte cap per output; {BUDGET_HELP}")
                    data += chunk
                return bytes(data)
        except (httpx.HTTPError, OSError) as error:  # OSError: a name that stopped resolving at connect
            raise _transport_error(error, url) from error
    raise refused(url, f"it redirected more than {MAX_REDIRECTS} times")


class OutputDownloads(FalConnection):
    """``download``, ``download_to`` and ``adownload``: the output files a result names, fetched without the key."""

    def download(self, url: str) -> bytes:
        """Fetch an output file fal produced (a media URL or a data URI), before fal's URL expires.

        fal's media URLs are public: the API key is never sent with them. Only https URLs on public addresses (or
        the queue host, or the connection's ``media_hosts``) are fetched, within ``max_output_bytes``; see
        this module.
        """
        data = bytearray()
        self.download_to(url, data.extend)
        return bytes(data)

    def download_to(self, url: str, sink: Callable[[bytes], Any]) -> str | None:
        """Stream an output file into ``sink`` (called with each chunk); returns its content type if known."""
        settings = self.get_settings()
        if url[:5].lower() == "data:":
            sink(data_uri_bytes(url, settings))
            return None
        from airflow_provider_sam3.hooks.deadlines import DOWNLOAD_CALLS, bounded

        client = sync_client(settings)
        with client:  # bounded in all (``hooks.deadlines``): closing the client ends a download that trickles
            return bounded(
                lambda: fetch(client, url, settings, sink),
                settings.request_timeout * DOWNLOAD_CALLS,
                on_expiry=client.close,
                what=f"the download of {short(url)}",
            )

    async def adownload(self, url: str) -> bytes:
        """Async ``download``; one connection pool per hook, so a batch does not pay a TLS handshake per file."""
        settings = await self.aget_settings()
        if url[:5].lower() == "data:":
            return data_uri_bytes(url, settings)
        from airflow_provider_sam3.hooks.deadlines import DOWNLOAD_CALLS, abounded

        if self._download_client is None:
            self._download_client = async_client(settings, DOWNLOAD_CONNECTIONS)
        fetched = afetch(self._download_client, url, settings)
        return await abounded(fetched, settings.request_timeout * DOWNLOAD_CALLS, what=f"the download of {short(url)}")
