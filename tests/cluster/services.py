"""Postgres and Redis as plain processes in temporary directories, on 127.0.0.1, for the cluster suite.

No systemd and no system-wide service: ``postgres`` and ``redis-server`` (Debian's packages, installed by
``make test``) run as children of the test session, in their own sessions, and are stopped (then SIGKILLed if
need be) when the cluster stops. A missing binary is an error, never a skip: CI must not go green without them.

Postgres refuses to run as root: as root the server runs as the ``postgres`` user that Debian's package creates
(its data directory is chowned to it). fsync is off: the suite tests Airflow and the provider, not Postgres's own
durability, and a busy 2-core machine has no time to spare on disk flushes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DB_USER = "airflow"
DB_PASSWORD = "airflow-cluster-db"  # a local throw-away cluster on 127.0.0.1: not a secret of the project
DATABASES = ("airflow", "celery")


class ServiceError(AssertionError):
    """A service could not be found or started (an assertion failure: the suite fails, it never skips)."""


def postgres_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``pg_ctl`` (Debian's layout), else ``pg_ctl`` on
    PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name.split(".")[0])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise ServiceError(
        "Postgres is not installed (no pg_ctl under /usr/lib/postgresql/*/bin nor on PATH): "
        "run `make test`, which installs the postgresql and redis-server Debian packages"
    )


def redis_server_bin() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError(
            "redis-server is not installed: run `make test`, which installs the postgresql and redis-server "
            "Debian packages"
        )
    return found


def _demote_to(user: str | None):
    """A ``preexec_fn`` running the child as ``user`` (None: as we are)."""
    if user is None:
        return None
    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.initgroups(user, entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"{what} exited with code {proc.returncode}:\n{_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise ServiceError(f"{what} not listening on 127.0.0.1:{port} after {timeout}s:\n{_tail(log)}")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen | None, sig: int, grace: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class PostgresServer:
    """A private Postgres cluster: ``initdb`` in a temporary directory, ``postgres`` on 127.0.0.1:``port``."""

    port: int
    env: dict[str, str]
    root: Path = field(init=False)
    proc: subprocess.Popen | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Not under pytest's basetemp: its folders are 0700 root, which the postgres user cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="sam3-cluster-pg-"))
        self.bin = postgres_bin_dir()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            try:
                pwd.getpwnam(self.user)
            except KeyError as exc:
                raise ServiceError("running as root, but there is no 'postgres' user to run Postgres as") from exc

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "airflow", driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            list(args),
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=180,
            preexec_fn=_demote_to(self.user),
        )
        if done.returncode != 0:
            output = f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            raise ServiceError(f"{' '.join(args)} exited {done.returncode}:\n{output}")

    def start(self) -> PostgresServer:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        password_file = self.root / "pwfile"
        password_file.write_text(DB_PASSWORD + "\n")
        if self.user is not None:
            os.chown(password_file, pwd.getpwnam(self.user).pw_uid, -1)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            DB_USER,
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
        )
        password_file.unlink()
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - the server's stderr for its whole life
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "max_connections=300",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_demote_to(self.user),
        )
        log.close()
        _wait_for_port(self.port, self.proc, self.log_path, 60, "postgres")
        for database in DATABASES:
            self._create_database(database)
        return self

    def _create_database(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before the server accepts connections
            try:
                conn = self.connect("postgres")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        try:
            conn.autocommit = True
            conn.cursor().execute(f'CREATE DATABASE "{name}" OWNER "{DB_USER}"')
        finally:
            conn.close()

    def connect(self, database: str = "airflow"):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=DB_USER, password=DB_PASSWORD, dbname=database, connect_timeout=10
        )

    def dump(self, database: str) -> str:
        """``pg_dump --data-only`` of one database, as text (every row of every table, ``COPY`` format)."""
        done = subprocess.run(
            [
                str(self.bin / "pg_dump"),
                "--data-only",
                "--no-owner",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                DB_USER,
                database,
            ],
            env={**self.env, "PGPASSWORD": DB_PASSWORD},
            capture_output=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise ServiceError(f"pg_dump {database} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode("utf-8", "replace")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL; the temporary directory goes."""
        try:
            _stop(self.proc, signal.SIGINT, 20)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class RedisServer:
    """``redis-server`` on 127.0.0.1:``port``, nothing saved to disk."""

    port: int
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen | None = field(init=False, default=None)

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                redis_server_bin(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.root),
            ],
            env=self.env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        _wait_for_port(self.port, self.proc, self.log_path, 30, "redis-server")
        return self

    def dump(self) -> list[tuple[str, bytes]]:
        """Every key of every database with its value(s) as bytes: ``(db/key/type, value)``, one per element."""
        import redis

        out: list[tuple[str, bytes]] = []
        admin = redis.Redis(host="127.0.0.1", port=self.port)
        databases = int(admin.config_get("databases")["databases"])
        for number in range(databases):
            client = redis.Redis(host="127.0.0.1", port=self.port, db=number)
            for key in client.scan_iter(count=1000):
                kind = client.type(key).decode()
                name = f"db{number}/{key.decode('utf-8', 'replace')}/{kind}"
                out.append((f"{name}/key", key))
                if kind == "string":
                    values = [client.get(key) or b""]
                elif kind == "list":
                    values = client.lrange(key, 0, -1)
                elif kind == "hash":
                    values = [b for pair in client.hgetall(key).items() for b in pair]
                elif kind == "set":
                    values = list(client.smembers(key))
                elif kind == "zset":
                    values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
                else:
                    values = [repr(kind).encode()]
                out += [(name, value) for value in values]
        return out

    def stop(self) -> None:
        _stop(self.proc, signal.SIGTERM, 10)
