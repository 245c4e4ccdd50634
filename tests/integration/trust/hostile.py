"""A small hostile HTTPS server on 127.0.0.1 for the trust-boundary tests: it records every connection and request
(with its headers, so a leaked key would be seen) and answers what the test scripts.

Bounded: loopback only, daemon threads, 5 s socket timeouts, stopped by the fixture. It uses the emulator's
certificate (``SSL_CERT_FILE`` trusts it), so a client that follows a URL to it would complete the TLS handshake
and send its request: every test asserts that it did not.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Answer = tuple[int, dict[str, str], bytes]
TRICKLE = "X-Test-Trickle-Seconds"
"""An answer header (not sent): write the body one byte per this many seconds."""
HOLD = "X-Test-Hold-Seconds"
"""An answer header (not sent): wait this long before the status line."""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostileServer:
    """``answer(method, path, server) -> (status, headers, body)``; ``accepted`` counts TCP connections (so even a
    plaintext request to this TLS port, or one that fails the handshake, is counted)."""

    cert_file: str
    answer: Callable[[str, str, HostileServer], Answer] = lambda method, path, server: (404, {}, b"{}")
    tls: bool = True
    accepted: int = 0
    trickles_cut: int = 0
    requests: list[Seen] = field(default_factory=list)

    def start(self) -> HostileServer:
        owner = self
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, str(Path(self.cert_file).with_name("key.pem")))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(min(length, 10_000_000))
                owner.requests.append(Seen(self.command, self.path, dict(self.headers.items())))
                status, headers, body = owner.answer(self.command, self.path, owner)
                headers = dict(headers)
                trickle = float(headers.pop(TRICKLE, 0) or 0)
                time.sleep(float(headers.pop(HOLD, 0) or 0))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if (
                    "content-length" not in {name.lower() for name in headers}
                    and headers.get("transfer-encoding") != "chunked"
                ):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if headers.get("transfer-encoding") == "chunked":
                    for start in range(0, len(body), 4096):
                        piece = body[start : start + 4096]
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                elif trickle:
                    try:
                        for byte in range(len(body)):
                            self.wfile.write(body[byte : byte + 1])
                            self.wfile.flush()
                            time.sleep(trickle)
                    except OSError:
                        owner.trickles_cut += 1
                else:
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = _serve

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, address = super().get_request()
                owner.accepted += 1
                sock.settimeout(5)
                if owner.tls:
                    sock = context.wrap_socket(sock, server_side=True)
                return sock, address

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    def saw_key(self, key: str) -> bool:
        return any(key in value for seen in self.requests for value in seen.headers.values())


def json_answer(body: Any, status: int = 200) -> Answer:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def submit_answer(request_id: str, *, status_url: str, response_url: str, cancel_url: str) -> Answer:
    return json_answer(
        {
            "status": "IN_QUEUE",
            "request_id": request_id,
            "queue_position": 0,
            "status_url": status_url,
            "response_url": response_url,
            "cancel_url": cancel_url,
        }
    )
