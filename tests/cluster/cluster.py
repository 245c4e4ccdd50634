"""A production-shaped Airflow on one host: Postgres, Redis, CeleryExecutor, two triggerers, two Celery workers.

:class:`AirflowCluster` is the deployment suite's :class:`~harness.AirflowDeployment` (DAG files, runs, task
states, XComs, task logs, clears: all reused) with other processes under it. Everything runs on 127.0.0.1 with
ports picked at run time, in temporary directories:

- Postgres (``services.PostgresServer``): database ``airflow`` (metadata) and ``celery`` (Celery's results);
- Redis (``services.RedisServer``): Celery's broker;
- ``airflow api-server``, ``scheduler``, ``dag-processor``;
- ``airflow triggerer`` twice (``triggerer-1``, ``triggerer-2``), each with its own trigger log server port;
- ``airflow celery worker`` twice (``worker-1``, ``worker-2``: ``--celery-hostname`` and Airflow hostname), each
  with its own worker log server port and pid file.

Each component names itself through ``sam3_cluster_hostname`` (``[core] hostname_callable``), so
``task_instance.hostname`` says which worker ran a try and ``job.hostname`` which triggerer holds a trigger.

Start-up: Postgres and Redis, ``airflow db migrate``, then the seven Airflow processes at once; ready when the
health endpoint reports every part healthy, both triggerers heartbeat and both workers are ready. ``stop()`` SIGTERMs
the Airflow processes, SIGKILLs whatever is left of them (by process group and by the deployment's marker variable,
which task processes in groups of their own still carry), then stops Redis and Postgres and removes their folders.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness import (
    AIRFLOW_BIN,
    AirflowDeployment,
    _descendants,
    _free_ports,
    _has_marker,
    _is_zombie,
    _ps,
    _signal,
)
from services import PostgresServer, RedisServer

HERE = Path(__file__).resolve().parent

TRIGGERERS = ("triggerer-1", "triggerer-2")
WORKERS = ("worker-1", "worker-2")
CORE = ("api-server", "scheduler", "dag-processor")
COMPONENTS = (*CORE, *TRIGGERERS, *WORKERS)


class _PgConnection:
    """A psycopg2 connection with the ``execute(sql, params)`` the harness calls on SQLite (``?`` placeholders)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.raw.autocommit = True

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        cursor = self.raw.cursor()
        cursor.execute(sql.replace("?", "%s"), tuple(params))
        return cursor

    def close(self) -> None:
        self.raw.close()


def _db_errors() -> tuple[type[BaseException], ...]:
    import psycopg2

    return (psycopg2.Error,)


@dataclass
class AirflowCluster(AirflowDeployment):
    """One Postgres + Redis + CeleryExecutor deployment with two triggerers and two workers."""

    db_errors: ClassVar[tuple[type[BaseException], ...]] = _db_errors()

    worker_concurrency: int = 2
    parallelism: int = 16
    startup_timeout: float = 240.0

    postgres: PostgresServer = field(init=False)
    redis: RedisServer = field(init=False)
    ports: dict[str, int] = field(init=False)
    components: dict[str, subprocess.Popen] = field(init=False, default_factory=dict)
    triggerer_jobs: dict[str, int] = field(init=False, default_factory=dict)
    events: list[str] = field(init=False, default_factory=list)
    stopped: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = ("postgres", "redis", *(f"log-{n}" for n in (*TRIGGERERS, *WORKERS)))
        self.ports = dict(zip(names, _free_ports(len(names) + 3)))
        self.log_path = self.home / "cluster.log"  # start, kill and restart events, for the post-mortem
        self.postgres = PostgresServer(self.ports["postgres"], self.env)
        self.redis = RedisServer(self.ports["redis"], self.env, self.home)
        self.env = self._cluster_env()

    def _cluster_env(self) -> dict[str, str]:
        env = dict(self.env)
        from cryptography.fernet import Fernet

        env.pop("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", None)  # per component, below
        env.pop("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", None)
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "sam3_cluster_hostname.hostname",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url("airflow"),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url("celery", driver="postgresql"),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.worker_concurrency),
                # One secret per deployment shared by every process: tokens the api-server signs are checked by
                # it, trigger kwargs encrypted by a worker are decrypted by either triggerer.
                "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(24).hex(),
                "AIRFLOW__API__SECRET_KEY": os.urandom(24).hex(),
                "AIRFLOW__API__WORKERS": "2",
                # A dead triggerer's triggers move once its heartbeat is this old (default 30 s).
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "6",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                # A task whose worker died is failed (and retried) once its heartbeat is this old (default 300 s).
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            }
        )
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def component_env(self, name: str) -> dict[str, str]:
        env = {**self.env, "SAM3_CLUSTER_HOSTNAME": name}
        if name in TRIGGERERS:
            env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(self.ports[f"log-{name}"])
        if name in WORKERS:
            env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(self.ports[f"log-{name}"])
        return env

    def component_args(self, name: str) -> list[str]:
        if name in TRIGGERERS:
            return ["triggerer", "--pid", str(self.home / f"{name}.pid")]
        if name in WORKERS:
            return [
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(self.worker_concurrency),
                "--pid",
                str(self.home / f"{name}.pid"),
            ]
        return [name]

    def note(self, message: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        with open(self.log_path, "a") as log:
            log.write(self.events[-1] + "\n")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> AirflowCluster:
        if self.components:
            return self
        t0 = time.monotonic()
        try:
            self.postgres.start()
            self.redis.start()
            self.note(f"postgres on {self.ports['postgres']}, redis on {self.ports['redis']}")
            self.cli("db", "migrate", timeout=300)
            self.note("db migrated")
            for name in COMPONENTS:
                self.start_component(name)
            self.wait_healthy(self.startup_timeout - (time.monotonic() - t0))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.monotonic() - t0, 1)
        self.note(f"healthy after {self.startup_seconds}s")
        return self

    def start_component(self, name: str) -> int:
        old = self.components.get(name)
        if old is not None and old.poll() is None:
            raise self.error(f"{name} is running (pid {old.pid})")
        log = open(self.home / f"component-{name}.log", "ab", buffering=0)  # noqa: SIM115
        self._log_handles.append(log)
        self.components[name] = subprocess.Popen(
            [str(AIRFLOW_BIN), *self.component_args(name)],
            cwd=self.home,
            env=self.component_env(name),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.killed.discard(name)
        self.note(f"started {name} pid {self.components[name].pid}")
        return self.components[name].pid

    def wait_healthy(self, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + max(timeout, 1.0)
        last: Any = None
        while time.monotonic() < deadline:
            dead = {
                n: p.returncode for n, p in self.components.items() if n not in self.killed and p.poll() is not None
            }
            if dead:
                raise self.error(f"components exited during start-up: {dead}")
            try:
                last = self.health()
                if self.is_healthy(last) and self._triggerers_ready() and self._workers_ready():
                    return last
            except (OSError, ValueError, AssertionError) as exc:
                last = repr(exc)[:300]
            time.sleep(1.0)
        raise self.error(
            f"not ready after {timeout:.0f}s; health: {last}; triggerer jobs: {self.triggerer_jobs}; "
            f"workers ready: {[w for w in WORKERS if self._worker_ready(w)]}"
        )

    def _triggerers_ready(self) -> bool:
        """Both triggerers heartbeat (recording the job id each one runs as)."""
        for name in TRIGGERERS:
            if name in self.killed:
                continue
            row = self.query_one(
                "SELECT id FROM job WHERE job_type='TriggererJob' AND state='running' AND hostname=? "
                "ORDER BY id DESC LIMIT 1",
                (name,),
            )
            if not row:
                return False
            self.triggerer_jobs[name] = int(row[0])
        return True

    def _worker_ready(self, name: str) -> bool:
        # Celery logs "<nodename> ready." once it consumes from the broker.
        log = self.home / f"component-{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return f"{name}@" in text and " ready." in text

    def _workers_ready(self) -> bool:
        return all(self._worker_ready(w) for w in WORKERS if w not in self.killed)

    def usable(self) -> bool:
        if self.killed or any(p.poll() is not None for p in self.components.values()):
            return False
        try:
            return self.is_healthy(self.health())
        except (OSError, ValueError, AssertionError):
            return False

    def stop(self, grace: float = 10.0, parent_grace: float = 5.0) -> list[int]:
        """SIGTERM every Airflow process, SIGKILL what is left (groups and marker), then Redis and Postgres.
        Idempotent: a second call does nothing (the components' pids may belong to other processes by then)."""
        if self.stopped:
            return []
        self.stopped = True
        for sampler in list(self._samplers.values()):
            sampler._stop.set()
        t0 = time.monotonic()
        killed: list[int] = []
        try:
            running = {n: p for n, p in self.components.items() if p.poll() is None}
            for proc in running.values():
                _signal(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while any(p.poll() is None for p in running.values()) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            killed = self._kill_airflow_leftovers()
            try:
                self.redis.stop()
            finally:
                self.postgres.stop()
            for pid in self.leftover_pids():  # anything else that carries the marker
                _signal(pid, signal.SIGKILL)
            for h in self._log_handles:
                h.close()
            self._log_handles.clear()
            self.stop_seconds = round(time.monotonic() - t0, 1)
            self.sigkilled = killed
            self.note(f"stopped in {self.stop_seconds}s; SIGKILLed {killed}")
            self.components = {}  # their pids (and so process groups) may be reused from now on
        return killed

    def _airflow_pids(self) -> list[int]:
        """Live Airflow processes: the components' groups, and marker carriers that are not Postgres or Redis."""
        services = {p.pid for p in (self.postgres.proc, self.redis.proc) if p is not None}
        groups = {p.pid for p in self.components.values()}
        me = os.getpid()
        found = []
        for info in _ps():
            if info.pid == me or info.pgid in services:
                continue
            if (info.pgid in groups or _has_marker(info.pid, self.marker)) and not _is_zombie(info.pid):
                found.append(info.pid)
        return found

    def _kill_airflow_leftovers(self) -> list[int]:
        killed = self._airflow_pids()
        for proc in self.components.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for pid in killed:
            _signal(pid, signal.SIGKILL)
        for proc in self.components.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while self._airflow_pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        return killed

    def leftover_pids(self, pgid: int | None = None) -> list[int]:
        """Live processes of this cluster: Airflow's, Postgres's and Redis's (groups or marker)."""
        services = {p.pid for p in (self.postgres.proc, self.redis.proc) if p is not None and p.poll() is None}
        me = os.getpid()
        found = set(self._airflow_pids())
        for info in _ps():
            if info.pid != me and info.pgid in services and not _is_zombie(info.pid):
                found.add(info.pid)
        return sorted(found)

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.components.items() if p.poll() is None}

    def kill_component(self, name: str, sig: int = signal.SIGKILL, tree: bool | None = None) -> int:
        """SIGKILL (by default) one component and everything under it (its log server, Celery's pool and the
        task processes it runs, the triggerer's runner): a crashed container or machine."""
        proc = self.components.get(name)
        if proc is None or proc.poll() is not None:
            raise self.error(f"no running component {name!r}; have {self.pids()}")
        self.killed.add(name)
        victims = _descendants(proc.pid) if (tree if tree is not None else sig == signal.SIGKILL) else []
        # Task processes move to groups of their own: find them by their parent chain, as above, and kill
        # children first so none is re-parented and missed.
        for pid in reversed(victims):
            _signal(pid, sig)
        os.kill(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self.note(f"sent signal {sig} to {name} pid {proc.pid} and {len(victims)} descendants")
        return proc.pid

    def restart(self, name: str, timeout: float = 120.0) -> None:
        """Start a killed component again and wait until the cluster is whole (healthy, both triggerers and
        both workers ready)."""
        proc = self.components.get(name)
        if proc is not None and proc.poll() is None:
            raise self.error(f"{name} still running (pid {proc.pid}); kill it first")
        if name in WORKERS:  # "ready." of the old process must not count: start a fresh log
            log = self.home / f"component-{name}.log"
            if log.exists():
                log.rename(log.with_suffix(f".{int(time.time())}.log"))
        self.start_component(name)
        self.wait_healthy(timeout)

    # ------------------------------------------------------------------ where things ran
    def triggerer_of(self, job_id: int | None) -> str | None:
        """Which triggerer (``triggerer-1`` / ``triggerer-2``) a ``trigger.triggerer_id`` is."""
        if job_id is None:
            return None
        row = self.query_one("SELECT hostname FROM job WHERE id=?", (job_id,))
        return row[0] if row else None

    def workers_that_ran(self, dag_id: str) -> set[str]:
        """The Celery workers whose logs show a workload of this DAG (every execution: a deferred task resumes on
        whichever worker takes it, and ``hostname`` keeps only the last one of each try)."""
        ran = set()
        for worker in WORKERS:
            for path in self.home.glob(f"component-{worker}*.log"):
                with path.open(errors="replace") as lines:
                    if any("Executing workload" in line and dag_id in line for line in lines):
                        ran.add(worker)
        return ran

    def hostnames(self, dag_id: str, run_id: str, task_id: str) -> dict[tuple[int, int], str | None]:
        """``{(map_index, try_number): hostname}`` of every try of a task: earlier tries from
        ``task_instance_history``, the current one from ``task_instance``."""
        out: dict[tuple[int, int], str | None] = {}
        for table in ("task_instance_history", "task_instance"):
            for map_index, try_number, hostname in self.query(
                f"SELECT map_index, try_number, hostname FROM {table} WHERE dag_id=? AND run_id=? AND task_id=?",
                (dag_id, run_id, task_id),
            ):
                out[(map_index, try_number)] = hostname
        return out

    # ------------------------------------------------------------------ the metadata DB (Postgres)
    def _connect(self) -> Any:
        return _PgConnection(self.postgres.connect("airflow"))

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        conn = self._connect()
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def _table_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM information_schema.tables WHERE table_name=?", (name,)))

    def log_tail(self, lines: int = 80) -> str:
        tail = super().log_tail(lines)
        extra = []
        for path in (self.postgres.log_path, self.redis.log_path):
            with contextlib.suppress(OSError):
                extra.append(f"----- {path.name} -----\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join([tail, *extra])
