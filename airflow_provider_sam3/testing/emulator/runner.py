"""``FalEmulator``: the emulator in-process, uvicorn on its own event loop in a daemon thread.

The Python API (``configure``, ``counters``, ``host_file``...) hands each call to that loop and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from airflow_provider_sam3.testing.emulator.config import EmulatorConfig, FaultKind, FaultRule
from airflow_provider_sam3.testing.emulator.media_store import INPUTS_PREFIX
from airflow_provider_sam3.testing.emulator.tls import generate_certificate

__all__ = ["CALL_TIMEOUT_S", "FalEmulator", "HOST", "START_TIMEOUT_S", "T"]

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
T = TypeVar("T")


class _QuietDroppedResponses(logging.Filter):
    """uvicorn reports the responses the ``drop_connection`` fault cuts short on purpose; hide those reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ConnectionAbortedError) and "drop_connection" in str(error))


class FalEmulator:
    """A fal queue emulator serving every SAM 3 registry endpoint over HTTPS on 127.0.0.1.

    ``with FalEmulator(EmulatorConfig(...)) as emu:`` starts it and waits until it accepts connections.
    """

    def __init__(self, config: EmulatorConfig | None = None, **knobs: Any) -> None:
        base = config or EmulatorConfig()
        self.initial_config = EmulatorConfig.model_validate({**base.model_dump(), **knobs})
        self.port: int | None = None
        self.cert_file: str | None = None
        self._core: Any = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # lifecycle

    def start(self) -> FalEmulator:
        if self._thread is not None:
            raise RuntimeError("this FalEmulator is already started")
        certs = generate_certificate(self.initial_config.cert_dir)
        self.cert_file = certs.cert_file
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only then (else ~40 ms per response).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.initial_config.port))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, certs, ready), name="fal-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"the fal emulator did not start: {self._error!r}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (self._server is not None and self._server.started):
            if self._error is not None or not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fal emulator did not start: {self._error!r}")
            time.sleep(0.01)
        with socket.create_connection((HOST, self.port), timeout=5):
            pass
        return self

    def _serve(self, sock: socket.socket, certs: Any, ready: threading.Event) -> None:
        import uvicorn

        from airflow_provider_sam3.testing.emulator.server import EmulatorCore, build_app

        logging.getLogger("uvicorn.error").addFilter(_QuietDroppedResponses())
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            core = EmulatorCore(self.initial_config, f"https://{HOST}:{self.port}", certs.cert_file)
            config = uvicorn.Config(
                build_app(core),
                ssl_certfile=certs.cert_file,
                ssl_keyfile=certs.key_file,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
                timeout_keep_alive=30,
            )
            self._core, self._server = core, uvicorn.Server(config)
        except BaseException as exc:
            self._error = exc
            ready.set()
            return
        ready.set()

        async def main() -> None:
            core.start()
            try:
                await self._server.serve(sockets=[sock])
            finally:
                await core.close()
                for connection in list(self._server.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.abort()
                await asyncio.sleep(0)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            self._error = exc
        finally:
            sock.close()
            loop.close()

    def stop(self) -> None:
        if self._server is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._exit_now)
        if self._thread is not None:
            self._thread.join(10)

    def _exit_now(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True

    def __enter__(self) -> FalEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # where it is

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the value for ``FAL_QUEUE_RUN_HOST``."""
        return f"{HOST}:{self._started().port}"

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"

    @property
    def api_key(self) -> str:
        return self._call(lambda core: core.config.api_key)

    @property
    def env(self) -> dict[str, str]:
        """The three variables that point an unmodified fal_client at this emulator."""
        return {"FAL_QUEUE_RUN_HOST": self.host, "SSL_CERT_FILE": str(self.cert_file), "FAL_KEY": self.api_key}

    # control

    def configure(self, **knobs: Any) -> EmulatorConfig:
        """Change runtime knobs (see ``EmulatorConfig``); ``faults`` replaces the fault rules."""
        return self._call(lambda core: core.configure(**knobs))

    @property
    def config(self) -> EmulatorConfig:
        return self._call(lambda core: core.config)

    def add_fault(self, rule: FaultRule | str | None = None, **fields: Any) -> FaultRule:
        """Add one fault rule, given as a ``FaultRule`` or its fields (``add_fault("nginx_502", first=2)``)."""
        if rule is None:
            rule = FaultRule(**fields)
        elif isinstance(rule, str):
            rule = FaultRule(kind=cast(FaultKind, rule), **fields)  # FaultRule validates the kind
        self._call(lambda core: core.add_fault(rule))
        return rule

    def reset(self, *, restore_config: bool = False) -> None:
        """Forget requests, files, counters and faults; ``restore_config`` also restores the starting knobs."""
        config = self.initial_config if restore_config else None
        self._call(lambda core: core.reset(config))

    def counters(self) -> dict[str, Any]:
        return self._call(lambda core: core.snapshot())

    def requests(self) -> list[dict[str, Any]]:
        return self._call(lambda core: [r.summary() for r in core.queue.records.values()])

    def host_file(self, data: bytes, file_name: str, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at an https URL on the emulator (kept until reset) and return the URL."""
        return self._call(lambda core: core.media.put(data, file_name, content_type, ttl_s=None, prefix=INPUTS_PREFIX))

    # plumbing

    def _started(self) -> FalEmulator:
        if self.port is None or self._loop is None or self._loop.is_closed():
            raise RuntimeError("the FalEmulator is not running; use `with FalEmulator() as emu:` or call start()")
        return self

    def _call(self, function: Callable[[Any], T]) -> T:
        loop = self._started()._loop
        assert loop is not None

        async def run() -> T:
            return function(self._core)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(CALL_TIMEOUT_S)
