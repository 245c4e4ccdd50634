"""Real-deployment harness: one ``airflow standalone`` in a throw-away AIRFLOW_HOME.

The harness starts every Airflow component as a real process (scheduler with LocalExecutor, dag-processor,
api-server, triggerer) on SQLite, with free loopback ports picked at runtime, and offers the helpers a
deployment test needs: write a DAG file, wait for it to be parsed, trigger a run, sample task states
(``deferred`` included), read XComs and task logs, clear a task, and kill / restart components.

Typical use (fixtures in ``conftest.py``)::

    def test_x(airflow_deployment, dag_writer):
        dag_id = dag_writer(SOURCE_WITH_{dag_id}_PLACEHOLDER)
        run_id = airflow_deployment.trigger(dag_id, conf={...}, watch=["my_task"])
        assert airflow_deployment.wait_for_run(dag_id, run_id, timeout=60) == "success"
        assert "deferred" in airflow_deployment.task_states_seen(dag_id, run_id, "my_task")

Reading the metadata DB directly with ``sqlite3`` is deliberate: it is fast (no 2-4 s CLI start-up) and does
not depend on API authentication. Every read is a short autocommit query on a read-only connection. By default
the REST API needs no token: the deployment runs SimpleAuthManager with ``simple_auth_manager_all_admins``.
With ``users={"name": (role, password), ...}`` it runs SimpleAuthManager with real logins instead (those users,
those passwords, a fixed JWT secret), and the harness's own REST calls carry an admin user's bearer token.

Facts measured on apache-airflow 3.3.2, 2 cores (see the test module for the clear/deferral ones):

- healthy (all four of ``metadatabase``/``scheduler``/``triggerer``/``dag_processor`` report
  ``status == "healthy"`` on ``GET /api/v2/monitor/health``) 10-15 s after start; about 1.1 GB PSS.
- a new DAG file is registered 1-2 s after it is written (refresh 2 s, parse ~0.1 s). Files must contain the
  words "airflow" and "dag" (``dag_discovery_safe_mode``) or they are silently skipped.
- logs: ``$AIRFLOW_HOME/logs/dag_id=<d>/run_id=<r>/task_id=<t>/[map_index=<m>/]attempt=<n>.log`` (worker) and
  ``...attempt=<n>.log.trigger.<triggerer job id>.log`` (triggerer, one per triggerer that ran the trigger);
  JSON lines.
- ``airflow tasks clear -t`` is a substring match, not a regex (``^x$`` silently clears nothing) and has no
  run-id filter: :meth:`AirflowDeployment.clear_task` targets the run through its unique logical_date.
- after a triggerer is SIGKILLed, a restarted one adopts its triggers only once the dead one's heartbeat is
  older than ``[triggerer] triggerer_health_check_threshold`` (30 s: ~26 s after the kill; with
  ``AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD=5`` in extra_env, at once).
- a SIGTERMed triggerer usually exits in 1-3 s but sometimes takes ~10 s (its trigger-runner subprocess
  misses the SIGINT and is only stopped by Airflow's 10 s escalation).

Process hygiene: ``airflow standalone`` starts its components in its own process group
(``start_new_session=True``), but the task supervisor moves every task process into a group of its own, so
teardown also scans ``/proc/*/environ`` for a per-deployment marker variable and kills whatever still carries
it. ``stop()`` is idempotent and is always called from the fixture finalizer (and at exit / on SIGTERM).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = (
    Path(sys.executable).parent if (Path(sys.executable).parent / "airflow").exists() else REPO_ROOT / ".venv" / "bin"
)
AIRFLOW_BIN = VENV_BIN / "airflow"

#: Environment variable carried by every process of one deployment (inherited through fork/exec); teardown
#: kills every process of this user whose environment carries it, whatever its process group.
MARKER_VAR = "AIRFLOW_DEPLOYMENT_HARNESS_ID"

COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")
TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

_UNSET = object()

#: The JWT secret of deployments with users (``users=``): fixed, so tokens outlive an api-server restart.
JWT_SECRET = "deployment-harness-jwt-secret-not-for-production"


class DeploymentError(AssertionError):
    """Raised (as an assertion failure, so pytest shows it plainly) with the standalone log tail attached."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now (the kernel picks it; small race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_ports(n: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < n:
        p = free_port()
        if p not in (8080, 8793, 8794):
            ports.add(p)
    return sorted(ports)


def _parse_db_time(value: str | None) -> dt.datetime | None:
    """SQLite stores Airflow's UtcDateTime as naive UTC text such as '2026-01-01 10:00:00.123456'."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    args: str


@dataclass
class Transition:
    """One distinct state observed by a sampler: seconds since the sampler started, state, try_number."""

    t: float
    state: str | None
    try_number: int | None


class TaskStateSampler:
    """Background thread polling one task instance every ``interval`` s; keeps the sequence of distinct states.

    A new :class:`Transition` is recorded whenever ``(state, try_number)`` changes, so a new try that reaches
    the same state again (``deferred`` of try 1, then ``deferred`` of try 2) still shows up. ``None`` is
    recorded when the row exists with a NULL state; a missing row is not recorded. States that last less than
    ``interval`` may be missed (``scheduled``/``queued``/``running`` often are).
    """

    def __init__(
        self,
        deployment: AirflowDeployment,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int = -1,
        interval: float = 0.2,
    ) -> None:
        self.deployment = deployment
        self.key = (dag_id, run_id, task_id, map_index)
        self.interval = interval
        self.transitions: list[Transition] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{dag_id}.{task_id}", daemon=True)
        self._thread.start()

    @property
    def states(self) -> list[str | None]:
        return [t.state for t in self.transitions]

    def elapsed(self) -> float:
        """Seconds since the sampler started, on the same clock as ``Transition.t``."""
        return round(time.monotonic() - self._t0, 2)

    def _run(self) -> None:
        dag_id, run_id, task_id, map_index = self.key
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self.deployment._connect()
                row = conn.execute(
                    "SELECT state, try_number FROM task_instance "
                    "WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
                    (dag_id, run_id, task_id, map_index),
                ).fetchone()
            except self.deployment.db_errors as exc:  # locked or schema not there yet: try again next tick
                self.errors.append(repr(exc))
                row = _UNSET
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                    conn = None
            if row is not None and row is not _UNSET:
                state, try_number = row
                last = self.transitions[-1] if self.transitions else None
                if last is None or (last.state, last.try_number) != (state, try_number):
                    with self._changed:
                        self.transitions.append(Transition(round(time.monotonic() - self._t0, 2), state, try_number))
                        self._changed.notify_all()
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def wait_for(self, states: str | None | Iterable[str | None], timeout: float = 60.0) -> str | None:
        """Block until the *current* sampled state is one of ``states``; returns it (raises on timeout)."""
        wanted = {states} if states is None or isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self.transitions and self.transitions[-1].state in wanted:
                    return self.transitions[-1].state
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.deployment.error(
                        f"task {self.key} never reached {sorted(map(str, wanted))} within {timeout}s; "
                        f"seen {self.states}"
                    )
                self._changed.wait(min(left, 0.5))

    def wait_until_seen(self, state: str | None, timeout: float = 60.0) -> None:
        """Block until ``state`` appears anywhere in the recorded sequence."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while state not in self.states:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.deployment.error(
                        f"task {self.key} never showed {state!r} within {timeout}s; seen {self.states}"
                    )
                self._changed.wait(min(left, 0.5))

    def stop(self) -> list[str | None]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.states


@dataclass
class AirflowDeployment:
    """One ``airflow standalone`` with its own AIRFLOW_HOME, SQLite DB, dags folder and ports."""

    #: What a failed metadata-DB read raises (a subclass on another database names its own driver's errors).
    db_errors: ClassVar[tuple[type[BaseException], ...]] = (sqlite3.Error,)

    extra_env: Mapping[str, str] = field(default_factory=dict)
    base_dir: Path | None = None
    parallelism: int = 4
    startup_timeout: float = 90.0
    keep_home: bool = False
    #: ``{username: (role, password)}``: real logins instead of all-admins (role ``""``: a user with no role). The
    #: harness's REST calls then authenticate as the first user whose role is admin.
    users: Mapping[str, tuple[str, str]] | None = None

    # Filled by start()
    home: Path = field(init=False)
    dags_folder: Path = field(init=False)
    log_path: Path = field(init=False)
    db_path: Path = field(init=False)
    api_port: int = field(init=False)
    worker_log_port: int = field(init=False)
    trigger_log_port: int = field(init=False)
    env: dict[str, str] = field(init=False)
    marker: str = field(init=False)
    proc: subprocess.Popen | None = field(init=False, default=None)
    startup_seconds: float | None = field(init=False, default=None)
    stop_seconds: float | None = field(init=False, default=None)
    sigkilled: list[int] = field(init=False, default_factory=list)
    killed: set[str] = field(init=False, default_factory=set)
    _extra_procs: dict[str, subprocess.Popen] = field(init=False, default_factory=dict)
    _samplers: dict[tuple, TaskStateSampler] = field(init=False, default_factory=dict)
    _written: dict[str, float] = field(init=False, default_factory=dict)
    _log_handles: list[Any] = field(init=False, default_factory=list)
    _tokens: dict[str, str] = field(init=False, default_factory=dict)

    # ------------------------------------------------------------------ lifecycle
    def __post_init__(self) -> None:
        self.marker = uuid.uuid4().hex
        self.home = Path(tempfile.mkdtemp(prefix="airflow-deploy-", dir=self.base_dir))
        self.dags_folder = self.home / "dags"
        self.dags_folder.mkdir()
        self.log_path = self.home / "standalone.log"
        self.db_path = self.home / "airflow.db"
        self.api_port, self.worker_log_port, self.trigger_log_port = _free_ports(3)
        self.env = self._build_env()
        if self.users:
            # SimpleAuthManager generates a password only for a user missing from this file: ours are all in it.
            passwords = {name: password for name, (_role, password) in self.users.items()}
            (self.home / "simple_auth_manager_passwords.json.generated").write_text(json.dumps(passwords) + "\n")

    def _build_env(self) -> dict[str, str]:
        # Start from the caller's environment minus anything Airflow- or fal-specific, so a developer's own
        # AIRFLOW_HOME / AIRFLOW__* / AIRFLOW_CONN_* / FAL_KEY never leaks in: pass those through extra_env.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "FAL_"))}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
        env.pop("PYTHONHOME", None)
        env.update(
            {
                MARKER_VAR: self.marker,
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
                # No login: the api-server injects an admin token into every request (REST without auth).
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # New files are found on every bundle refresh; existing files are re-parsed this often.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "1",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
                # The scheduler's own health server would listen on fixed port 8974.
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            }
        )
        if self.users:
            # Real logins: ``user:role`` pairs (an empty role is a user who may do nothing), passwords from the file
            # written in __post_init__, tokens signed with a known secret.
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(
                f"{name}:{role}" for name, (role, _password) in self.users.items()
            )
            env["AIRFLOW__API_AUTH__JWT_SECRET"] = JWT_SECRET
        env.update({k: str(v) for k, v in self.extra_env.items()})
        return env

    def start(self) -> AirflowDeployment:
        if self.proc is not None:
            return self
        if not self.db_path.exists():
            self.cli("db", "migrate", timeout=300)
            never_reuse_trigger_ids(self.db_path)
        t0 = time.monotonic()
        self.proc = self._spawn("standalone", self.log_path)
        try:
            self.wait_healthy(self.startup_timeout - (time.monotonic() - t0))
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = round(time.monotonic() - t0, 1)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + max(timeout, 1.0)
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.error(f"airflow standalone exited with code {self.proc.returncode} during start-up")
            try:
                last = self.health()
                if self.is_healthy(last):
                    return last
            except (OSError, ValueError, DeploymentError) as exc:
                last = repr(exc)[:300]
            time.sleep(0.5)
        raise self.error(f"not healthy after {timeout:.0f}s; last health answer: {last}")

    @staticmethod
    def is_healthy(health: Mapping[str, Any]) -> bool:
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def health(self) -> dict:
        """``GET /api/v2/monitor/health`` (no auth needed)."""
        return self.api("GET", "/api/v2/monitor/health", timeout=5, auth=False)

    def usable(self) -> bool:
        """True when this instance can be shared with another test: alive, nothing killed, healthy."""
        if self.proc is None or self.proc.poll() is not None or self.killed:
            return False
        try:
            return self.is_healthy(self.health())
        except (OSError, ValueError, DeploymentError):
            return False

    def stop(self, grace: float = 8.0, parent_grace: float = 5.0) -> list[int]:
        """Stop everything; returns the pids that had to be SIGKILLed (empty on a clean shutdown).

        1. SIGTERM each component's main process (scheduler, dag-processor, api-server, triggerer and any
           restarted one) and wait up to ``grace`` s for them, while the standalone parent still relays
           their output into the log.
        2. SIGTERM the parent (it ignores SIGINT, and does not exit by itself when its children die); wait.
        3. SIGKILL leftovers: the standalone process group plus every process carrying this deployment's
           marker (task processes live in process groups of their own).

        Idempotent; safe to call after a failed start.
        """
        for sampler in list(self._samplers.values()):
            sampler._stop.set()
        if self.proc is None:
            return []
        pgid = self.proc.pid
        debug = bool(os.environ.get("DEPLOYMENT_HARNESS_DEBUG"))
        t0 = time.monotonic()
        killed: list[int] = []
        try:
            # All components at once; the parent stays alive meanwhile so their shutdown output still
            # reaches the log. Usually 1-2 s; the triggerer sometimes needs ~10 s: it SIGINTs its trigger
            # runner subprocess, whose handler sets an asyncio event without waking the loop, so the runner
            # only exits when Airflow escalates after 10 s. Bounded by ``grace``, then SIGKILL.
            targets: list[tuple[str, int]] = []
            current = self.pids() if self.proc.poll() is None else {}
            targets += [(n, p) for n, p in current.items() if n != "standalone"]
            targets += [
                (n, p.pid) for n, p in self._extra_procs.items() if p.poll() is None and (n, p.pid) not in targets
            ]
            for _, pid in targets:
                _signal(pid, signal.SIGTERM)
            deadline = t0 + grace
            pending = dict(targets)
            while pending and time.monotonic() < deadline:
                for name, pid in list(pending.items()):
                    if not self._pid_alive(pid):
                        del pending[name]
                        if debug:
                            print(
                                f"[stop] {name} pid {pid} exited after {time.monotonic() - t0:.1f}s",
                                file=sys.stderr,
                                flush=True,
                            )
                time.sleep(0.05)
            if pending and debug:
                print(f"[stop] still alive after {grace}s: {pending}", file=sys.stderr, flush=True)
            # Give grandchildren (serve-logs, executor workers, trigger runner) a moment to follow.
            settle = min(deadline, time.monotonic() + 3)
            while time.monotonic() < settle:
                if not [p for p in self.leftover_pids(pgid) if p != self.proc.pid]:
                    break
                time.sleep(0.1)
            _signal(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=parent_grace)
        finally:
            killed = self.leftover_pids(pgid)
            for group in {pgid, *(p.pid for p in self._extra_procs.values())}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
            for pid in killed:
                _signal(pid, signal.SIGKILL)
            for p in [self.proc, *self._extra_procs.values()]:
                with contextlib.suppress(Exception):
                    p.wait(timeout=10)
            deadline = time.monotonic() + 10
            while self.leftover_pids(pgid) and time.monotonic() < deadline:
                time.sleep(0.2)
            # The standalone parent never wait()s for its components, so after it dies they linger as
            # zombies (already dead, ppid 1) until init reaps them, 0-10 s here. Wait briefly, cosmetic only.
            groups = {pgid, *(p.pid for p in self._extra_procs.values())}
            deadline = time.monotonic() + 3
            while any(i.pgid in groups for i in _ps()) and time.monotonic() < deadline:
                time.sleep(0.2)
            for h in self._log_handles:
                h.close()
            self._log_handles.clear()
            self.stop_seconds = round(time.monotonic() - t0, 1)
            self.sigkilled = killed
        return killed

    def leftover_pids(self, pgid: int | None = None) -> list[int]:
        """Live (non-zombie) processes of this deployment: in its process group or carrying its marker."""
        pgid = pgid if pgid is not None else (self.proc.pid if self.proc else None)
        groups = {pgid, *(p.pid for p in self._extra_procs.values())} - {None}
        me = os.getpid()
        found = []
        for info in _ps():
            if info.pid == me:
                continue
            if info.pgid in groups or _has_marker(info.pid, self.marker):
                if not _is_zombie(info.pid):
                    found.append(info.pid)
        return found

    def cleanup_home(self) -> None:
        if not self.keep_home:
            import shutil

            shutil.rmtree(self.home, ignore_errors=True)

    # ------------------------------------------------------------------ diagnostics
    def scheduler_failed_the_try(self, dag_id: str, run_id: str, task_id: str) -> bool:
        """Whether the scheduler failed a queued try of this task on a stale "success" from the executor (the
        process that deferred it), Airflow 3.3.2's resume race (apache/airflow#67287): the try never ran."""
        needle = f"reported that the task instance <TaskInstance: {dag_id}.{task_id} {run_id} [queued]"
        for path in [self.log_path, *sorted(self.home.glob("component-*.log"))]:
            with contextlib.suppress(FileNotFoundError), path.open(errors="replace") as lines:
                if any(needle in line for line in lines):
                    return True
        return False

    def log_tail(self, lines: int = 80) -> str:
        chunks = []
        for path in [self.log_path, *sorted(self.home.glob("component-*.log"))]:
            try:
                text = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            chunks.append(f"----- {path.name} (last {lines} lines) -----\n" + "\n".join(text[-lines:]))
        return "\n".join(chunks)

    def error(self, message: str, lines: int = 80) -> DeploymentError:
        return DeploymentError(f"{message}\nAIRFLOW_HOME={self.home}\n{self.log_tail(lines)}")

    # ------------------------------------------------------------------ processes
    def processes(self) -> list[ProcInfo]:
        """All live processes of this deployment (process group or marker)."""
        live = set(self.leftover_pids())
        return [p for p in _ps() if p.pid in live]

    def pids(self) -> dict[str, int]:
        """Main pid of each component: ``standalone`` (parent), ``scheduler``, ``dag-processor``, ``api-server``,
        ``triggerer``. A component started by :meth:`restart_triggerer` replaces the standalone one."""
        out: dict[str, int] = {}
        if self.proc is None or self.proc.poll() is not None:
            return out
        out["standalone"] = self.proc.pid
        for info in _ps():
            if info.ppid != self.proc.pid:
                continue
            name = _component_name(info.args)
            if name:
                out[name] = info.pid
        for name, p in self._extra_procs.items():
            if p.poll() is None:
                out[name] = p.pid
        return out

    def kill_component(self, name: str, sig: int = signal.SIGKILL, tree: bool | None = None) -> int:
        """Send ``sig`` to one component's main process; the deployment is then no longer shared.

        ``tree`` (default: True for SIGKILL) also signals the component's descendants first (its serve-logs
        server, executor workers, the triggerer's trigger-runner subprocess), like a container crash. A
        SIGKILLed triggerer alone leaves its serve-logs orphaned on the trigger log port, and a restarted
        triggerer then fails to bind it ("address already in use", non-fatal)."""
        pid = self.pids().get(name)
        if pid is None:
            raise self.error(f"no running component {name!r}; have {self.pids()}")
        self.killed.add(name)
        if tree if tree is not None else sig == signal.SIGKILL:
            for child in _descendants(pid):
                _signal(child, sig)
        os.kill(pid, sig)
        return pid

    def start_component(self, name: str) -> int:
        """Start ``airflow <name>`` with the deployment's env, output to ``component-<name>.log``.

        It runs in a session of its own (joining the standalone group from outside its session is EPERM);
        ``stop()`` SIGTERMs it with the others and SIGKILLs its group and marker-carrying leftovers."""
        assert self.proc is not None, "deployment not started"
        old = self._extra_procs.get(name)
        if old is not None and old.poll() is None:
            raise self.error(f"{name} already restarted and running (pid {old.pid})")
        p = self._spawn(name, self.home / f"component-{name}.log")
        self._extra_procs[name] = p
        self.killed.discard(name)
        return p.pid

    def restart_triggerer(self, wait: bool = True, timeout: float = 60.0) -> int:
        """Start a fresh ``airflow triggerer`` (the old one is expected to be dead); optionally wait until its
        heartbeat makes the health endpoint report the triggerer healthy again."""
        old = self.pids().get("triggerer")
        gone_by = time.monotonic() + 10.0  # a SIGKILLed process needs a moment to be torn down and reaped
        while old is not None and self._pid_alive(old) and time.monotonic() < gone_by:
            time.sleep(0.05)
        if old is not None and self._pid_alive(old):
            raise self.error(f"triggerer pid {old} still alive; kill it first")
        started = dt.datetime.now(dt.timezone.utc)
        pid = self.start_component("triggerer")
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                row = self.query_one(
                    "SELECT MAX(latest_heartbeat) FROM job WHERE job_type='TriggererJob' AND state='running'"
                )
                hb = _parse_db_time(row[0] if row else None)
                if hb and hb >= started:
                    return pid
                time.sleep(0.3)
            raise self.error(f"restarted triggerer (pid {pid}) did not heartbeat within {timeout}s")
        return pid

    @staticmethod
    def _pid_alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not _is_zombie(pid)

    # ------------------------------------------------------------------ CLI / REST / DB
    def cli(self, *args: str, timeout: float = 60.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``airflow <args>`` with the deployment's env (2-4 s of import time per call)."""
        res = subprocess.run(
            [str(AIRFLOW_BIN), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise self.error(
                f"airflow {' '.join(args)} exited {res.returncode}\nstdout:\n{res.stdout[-3000:]}\n"
                f"stderr:\n{res.stderr[-3000:]}",
                lines=30,
            )
        return res

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def login_token(self, username: str, *, fresh: bool = False) -> str:
        """A bearer token for one of ``users`` (``POST /auth/token``), kept until ``fresh`` asks for a new one."""
        if not self.users or username not in self.users:
            raise self.error(f"{username!r} is not one of this deployment's users {sorted(self.users or ())}", 0)
        if fresh or username not in self._tokens:
            body = json.dumps({"username": username, "password": self.users[username][1]}).encode()
            req = urllib.request.Request(
                f"{self.base_url}/auth/token",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Accept": "application/json"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    self._tokens[username] = json.loads(resp.read())["access_token"]
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                raise self.error(f"POST /auth/token as {username!r} -> HTTP {exc.code}: {detail}", lines=20) from None
        return self._tokens[username]

    def _admin_user(self) -> str | None:
        """The user the harness's REST calls authenticate as (None: all-admins mode, no token)."""
        if not self.users:
            return None
        for name, (role, _password) in self.users.items():
            if role.lower() == "admin":
                return name
        raise self.error(f"no user with the admin role among {sorted(self.users)}: the harness cannot call the API", 0)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30.0, auth: bool = True) -> Any:
        """JSON request to the api-server. In all-admins mode no token is needed; with ``users`` the request
        carries an admin user's bearer token (``auth=False``: anonymous), fetched again once on a 401. A request
        refused because SQLite was locked (a busy machine: the tasks' own writes hold the lock past SQLite's 5 s
        wait) is sent again: the refusal comes before the request's own transaction, so nothing was done."""
        data = None if body is None else json.dumps(body).encode()
        admin = self._admin_user() if auth else None
        refreshed = False
        for attempt in range(20):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            if admin is not None:
                headers["Authorization"] = f"Bearer {self.login_token(admin)}"
            req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    raw = resp.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                if exc.code == 500 and _sqlite_locked(detail) and attempt < 19:
                    time.sleep(0.5)
                    continue
                if exc.code == 401 and admin is not None and not refreshed:  # expired (or a restarted server)
                    self.login_token(admin, fresh=True)
                    refreshed = True
                    continue
                raise self.error(f"{method} {path} -> HTTP {exc.code}: {detail}", lines=20) from None
            return json.loads(raw) if raw else None
        raise AssertionError("unreachable")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"file:{self.db_path}?mode=ro", uri=True, timeout=5, isolation_level=None, check_same_thread=False
        )
        return conn

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        """Read-only query on the metadata DB (retries briefly when the DB is locked)."""
        for attempt in range(20):
            try:
                conn = self._connect()
                try:
                    return conn.execute(sql, tuple(params)).fetchall()
                finally:
                    conn.close()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def query_one(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # ------------------------------------------------------------------ DAGs
    def write_dag(self, filename: str, source: str) -> Path:
        """Write (dedented) ``source`` into the dags folder atomically; ``wait_for_dag`` then waits for a
        parse newer than this write."""
        text = textwrap.dedent(source)
        # dag_discovery_safe_mode (default on) silently skips files lacking both words.
        if "airflow" not in text.lower() or "dag" not in text.lower():
            raise ValueError(f"{filename}: the dag-processor skips files without both 'airflow' and 'dag' in them")
        path = self.dags_folder / filename
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        self._written[str(path)] = time.time()
        return path

    def _spawn(self, component: str, log_path: Path) -> subprocess.Popen:
        """Start ``airflow <component>`` in its own session, appending to ``log_path``."""
        log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - closed with the deployment
        self._log_handles.append(log)
        return subprocess.Popen(
            [str(AIRFLOW_BIN), component],
            cwd=self.home,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def remove_dag_file(self, filename: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dags_folder / filename).unlink()

    def stop_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """End every unfinished run of ``dag_id`` (marked failed, as a user would) and wait until none of its task
        instances is running, deferred or waiting to run: the deployment is shared, and a test's leftover run would
        otherwise keep submitting to the emulator while the next test counts its requests."""
        for (run_id,) in self.query(
            "SELECT run_id FROM dag_run WHERE dag_id=? AND state NOT IN ('success', 'failed')", (dag_id,)
        ):
            self.set_run_state(dag_id, run_id, "failed")
        active = "('running', 'deferred', 'queued', 'scheduled', 'up_for_retry', 'up_for_reschedule', 'restarting')"
        deadline = time.monotonic() + timeout
        while self.query_one(f"SELECT 1 FROM task_instance WHERE dag_id=? AND state IN {active}", (dag_id,)):
            if time.monotonic() > deadline:
                raise self.error(f"{dag_id} still has unfinished task instances {timeout:.0f} s after its runs ended")
            time.sleep(0.3)

    def import_errors(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.query("SELECT filename, stacktrace FROM import_error")]

    def wait_for_dag(self, dag_id: str, timeout: float = 45.0) -> dict:
        """Wait until ``dag_id`` is parsed, serialized, active and unpaused (and, if its file was written by
        :meth:`write_dag`, parsed after that write). Fails fast on an import error for a written file."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            row = (
                self.query_one(
                    "SELECT d.fileloc, d.is_paused, d.is_stale, d.last_parsed_time, "
                    "(SELECT COUNT(*) FROM serialized_dag s WHERE s.dag_id = d.dag_id) "
                    "FROM dag d WHERE d.dag_id = ?",
                    (dag_id,),
                )
                if self._table_exists("dag")
                else None
            )
            last = row
            if row:
                fileloc, is_paused, is_stale, parsed, n_serialized = row
                written = self._written.get(str(fileloc))
                fresh = written is None or (
                    (p := _parse_db_time(parsed)) is not None and p.timestamp() >= written - 1.0
                )
                if not is_paused and not is_stale and n_serialized and fresh:
                    return {"fileloc": fileloc, "last_parsed_time": parsed}
            written_files = {w for w in self._written if Path(w).exists()}  # a removed file's errors are stale
            written_names = {Path(w).name for w in written_files}
            for filename, stack in self.import_errors():
                # import_error.filename is relative to the bundle root ("my_dag.py").
                if (
                    filename in written_files
                    or filename in written_names
                    or any(filename.endswith("/" + n) for n in written_names)
                ):
                    raise self.error(f"import error in {filename} while waiting for {dag_id}:\n{stack}", 30)
            time.sleep(0.3)
        raise self.error(f"DAG {dag_id!r} not registered within {timeout}s (dag row: {last})")

    def _table_exists(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))

    # ------------------------------------------------------------------ runs
    def trigger(
        self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None, watch: Iterable[str] = ()
    ) -> str:
        """Trigger through ``POST /api/v2/dags/{dag_id}/dagRuns`` with ``logical_date = now`` (so the CLI's
        date filters can target the run). ``watch`` starts state samplers for these task ids at once."""
        now = dt.datetime.now(dt.timezone.utc)
        body: dict[str, Any] = {"logical_date": now.isoformat(), "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        res = self.api("POST", f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns", body)
        run_id = res["dag_run_id"]
        for task_id in watch:
            self.watch_task(dag_id, run_id, task_id)
        return run_id

    def run_info(self, dag_id: str, run_id: str) -> dict | None:
        row = self.query_one(
            "SELECT state, logical_date, run_after, start_date, end_date FROM dag_run WHERE dag_id=? AND run_id=?",
            (dag_id, run_id),
        )
        if not row:
            return None
        return dict(zip(("state", "logical_date", "run_after", "start_date", "end_date"), row))

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        info = self.run_info(dag_id, run_id)
        return info["state"] if info else None

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 60.0, states: Iterable[str] = TERMINAL_RUN_STATES
    ) -> str:
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in wanted:
                return state
            time.sleep(0.3)
        raise self.error(
            f"run {dag_id}/{run_id} not in {sorted(wanted)} after {timeout}s (state {state}); "
            f"task instances: {self.task_instances(dag_id, run_id)}"
        )

    def set_task_state(self, dag_id: str, run_id: str, task_id: str, state: str, map_index: int | None = None) -> Any:
        """Mark one task instance ``state`` through the REST API (what a user does in the UI)."""
        path = "/api/v2/dags/{}/dagRuns/{}/taskInstances/{}".format(
            urllib.parse.quote(dag_id, safe=""), urllib.parse.quote(run_id, safe=""), urllib.parse.quote(task_id)
        )
        if map_index is not None:
            path += f"/{map_index}"
        return self.api("PATCH", path, {"new_state": state})

    def set_run_state(self, dag_id: str, run_id: str, state: str = "failed") -> Any:
        """``PATCH /api/v2/dags/<dag>/dagRuns/<run>`` (``failed``/``success``/``queued``); marking a run
        finished ends its unfinished task instances and cancels their triggers (a user action)."""
        return self.api(
            "PATCH",
            f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns/{urllib.parse.quote(run_id, safe='')}",
            {"state": state},
        )

    # ------------------------------------------------------------------ task instances
    def task_instances(self, dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
        rows = self.query(
            "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id=? AND run_id=?",
            (dag_id, run_id),
        )
        return {(t if m < 0 else f"{t}[{m}]"): (s, n) for t, m, s, n in rows}

    def task_state(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str | None:
        row = self.query_one(
            "SELECT state FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
            (dag_id, run_id, task_id, map_index),
        )
        return row[0] if row else None

    def try_number(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> int | None:
        row = self.query_one(
            "SELECT try_number FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=? AND map_index=?",
            (dag_id, run_id, task_id, map_index),
        )
        return row[0] if row else None

    def watch_task(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, interval: float = 0.2
    ) -> TaskStateSampler:
        """Start (or return the running) background sampler for one task instance."""
        key = (dag_id, run_id, task_id, map_index)
        sampler = self._samplers.get(key)
        if sampler is None:
            sampler = self._samplers[key] = TaskStateSampler(self, dag_id, run_id, task_id, map_index, interval)
        return sampler

    def task_states_seen(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[str | None]:
        """Distinct states recorded so far by the sampler of this task instance (started if needed)."""
        return self.watch_task(dag_id, run_id, task_id, map_index).states

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: str | None | Iterable[str | None],
        timeout: float = 60.0,
        map_index: int = -1,
    ) -> str | None:
        return self.watch_task(dag_id, run_id, task_id, map_index).wait_for(states, timeout)

    def trigger_rows(self) -> list[dict]:
        """Rows of the ``trigger`` table (id, classpath, kwargs text, triggerer_id)."""
        rows = self.query("SELECT id, classpath, kwargs, triggerer_id, created_date FROM trigger")
        return [dict(zip(("id", "classpath", "kwargs", "triggerer_id", "created_date"), r)) for r in rows]

    def xcom(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        key: str = "return_value",
        map_index: int = -1,
        default: Any = _UNSET,
    ) -> Any:
        """Decoded JSON value of one XCom as stored in the DB (serde envelope kept for non-JSON types)."""
        row = self.query_one(
            "SELECT value FROM xcom WHERE dag_id=? AND run_id=? AND task_id=? AND key=? AND map_index=?",
            (dag_id, run_id, task_id, key, map_index),
        )
        if row is None:
            if default is not _UNSET:
                return default
            raise self.error(f"no XCom {key!r} for {dag_id}/{run_id}/{task_id}", lines=20)
        value = row[0]
        if isinstance(value, bytes):
            value = value.decode()
        return json.loads(value) if isinstance(value, str) else value

    def task_log_paths(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[Path]:
        """``logs/dag_id=<d>/run_id=<r>/task_id=<t>/[map_index=<m>/]attempt=<n>.log`` plus the triggerer's
        ``attempt=<n>.log.trigger.<triggerer_job_id>.log`` files, in that order."""
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            base = base / f"map_index={map_index}"
        main = base / f"attempt={try_number}.log"
        # One file per triggerer job that ran the trigger (a restarted triggerer adds one), oldest first.
        triggers = sorted(base.glob(f"attempt={try_number}.log.trigger.*.log"), key=lambda p: p.stat().st_mtime)
        return [p for p in [main, *triggers] if p.exists()]

    def trigger_logs(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """Every triggerer log of every try of one task instance. Airflow 3.3.2 may name a trigger's log after the
        try before (a loaded CI run: try 10's trigger, "segment/-1/9", wrote to ``attempt=9.log.trigger.*.log``):
        look for a trigger's lines here, not in one try's files."""
        base = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            base = base / f"map_index={map_index}"
        return "\n".join(path.read_text(errors="replace") for path in sorted(base.glob("attempt=*.log.trigger.*.log")))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        """Worker log of one try followed by its triggerer log(s); each file preceded by a ``==> name <==``
        header. Lines are structlog JSON (``event``, ``level``, ``logger``, ``timestamp``...)."""
        parts = []
        for path in self.task_log_paths(dag_id, run_id, task_id, try_number, map_index):
            parts.append(f"==> {path.name} <==\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def task_log_events(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict]:
        """Task + trigger log lines parsed as JSON (non-JSON lines come back as ``{"event": line}``)."""
        events = []
        for path in self.task_log_paths(dag_id, run_id, task_id, try_number, map_index):
            for line in path.read_text(errors="replace").splitlines():
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                except ValueError:
                    ev = {"event": line}
                if not isinstance(ev, dict):
                    ev = {"event": line}
                ev.setdefault("_file", path.name)
                events.append(ev)
        return events

    def clear_task(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        via: str = "cli",
        downstream: bool = False,
        map_index: int | None = None,
    ) -> Any:
        """Clear one task instance of one run.

        ``via="cli"``: ``airflow tasks clear <dag> -t <task> -s <logical_date> -e <logical_date> -y`` (the CLI
        has no run-id filter; ``trigger()`` sets a unique logical_date for that reason; ``-t`` is a substring
        match in 3.3.2, so ids contained in another task id of the run are refused). ``via="api"``:
        ``POST /api/v2/dags/<dag>/clearTaskInstances`` with ``dag_run_id`` and ``only_failed=false`` (``map_index``:
        only that mapped instance; api only).
        """
        if via == "api":
            task: Any = [task_id, map_index] if map_index is not None else task_id
            return self.api(
                "POST",
                f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}/clearTaskInstances",
                {
                    "dry_run": False,
                    "dag_run_id": run_id,
                    "task_ids": [task],
                    "only_failed": False,
                    "include_downstream": downstream,
                    "reset_dag_runs": True,
                },
            )
        if map_index is not None:
            raise self.error("clear_task(..., map_index=...) needs via='api'", 0)
        info = self.run_info(dag_id, run_id)
        if not info or not info["logical_date"]:
            raise self.error(f"run {dag_id}/{run_id} has no logical_date; use clear_task(..., via='api')", 20)
        # 3.3.2: ``-t`` is documented as a regex but SerializedDAG.partial_subset() does a *substring* match
        # (``"^wait$"`` matches nothing and the command exits 0 silently). Refuse ambiguous ids instead.
        others = [t for t in self.task_instances(dag_id, run_id) if t != task_id and task_id in t]
        if others:
            raise self.error(f"'airflow tasks clear -t {task_id}' would also clear {others}; use via='api'", 0)
        ld = _parse_db_time(info["logical_date"]).isoformat()
        args = ["tasks", "clear", dag_id, "-t", task_id, "-s", ld, "-e", ld, "-y"]
        if downstream:
            args.append("-d")
        return self.cli(*args)


def never_reuse_trigger_ids(db_path: Path) -> None:
    """Rebuild Airflow's ``trigger`` table with ``AUTOINCREMENT``: SQLite otherwise gives a new trigger the id of
    the one just deleted (max rowid + 1), and the triggerer, which tracks triggers by id, may then keep running a
    cleared try's trigger for the rerun (no ``on_kill``, no new trigger; seen on CI: ten reruns all "ID 1"). Airflow's
    supported databases (Postgres, MySQL) never reuse ids; the cluster suite runs on Postgres unchanged."""
    conn = sqlite3.connect(db_path)
    try:
        (ddl,) = conn.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='trigger'").fetchone()
        indexes = [
            sql
            for (sql,) in conn.execute(
                "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='trigger' AND sql IS NOT NULL"
            )
        ]
        assert "\tid INTEGER NOT NULL, " in ddl and "CONSTRAINT trigger_pkey PRIMARY KEY (id), " in ddl, ddl
        new_ddl = (
            ddl.replace('"trigger"', '"trigger_autoincrement"', 1)
            .replace("\tid INTEGER NOT NULL, ", "\tid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, ")
            .replace("CONSTRAINT trigger_pkey PRIMARY KEY (id), ", "")
        )
        conn.execute("PRAGMA foreign_keys=OFF")
        with conn:
            conn.execute(new_ddl)
            conn.execute('INSERT INTO "trigger_autoincrement" SELECT * FROM "trigger"')
            conn.execute('DROP TABLE "trigger"')
            conn.execute('ALTER TABLE "trigger_autoincrement" RENAME TO "trigger"')
            for sql in indexes:
                conn.execute(sql)
    finally:
        conn.close()


def _sqlite_locked(detail: str) -> bool:
    """Whether an api-server error is SQLite's "database is locked" (Airflow answers it with an error id, or as a
    "Database error" whose details it hides)."""
    return any(
        sign in detail
        for sign in ("database is locked", "Error with id", '"reason":"Database error"', '"reason": "Database error"')
    )


# ---------------------------------------------------------------------- process helpers
def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _ps() -> list[ProcInfo]:
    out = subprocess.run(["ps", "-e", "-ww", "-o", "pid=,ppid=,pgid=,args="], capture_output=True, text=True).stdout
    infos = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 3:
            continue
        infos.append(ProcInfo(int(parts[0]), int(parts[1]), int(parts[2]), parts[3] if len(parts) > 3 else ""))
    return infos


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (children before grandchildren)."""
    infos = _ps()
    out: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop(0)
        kids = [i.pid for i in infos if i.ppid == parent]
        out += kids
        frontier += kids
    return out


def _has_marker(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{MARKER_VAR}={marker}".encode() in f.read()
    except OSError:
        return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def _component_name(args: str) -> str | None:
    """Map a standalone child's command line to its component name."""
    words = args.split()
    for i, w in enumerate(words):
        if w.endswith("airflow") or w == "airflow":
            rest = words[i + 1 :]
            if rest:
                sub = rest[0].replace("_", "-")
                if sub in COMPONENTS:
                    return sub
    if "api_server" in args or "api-server" in args:
        return "api-server"
    return None


class DeploymentPool:
    """Session-wide owner of at most one running deployment, shared while the requested env is the same.

    ``get(env)`` returns the running deployment when its extra env equals ``env`` and it is still usable
    (alive, healthy, no component killed by a test); otherwise it stops it and starts a new one. Only one
    instance runs at a time (each costs ~1 GB and most of 2 cores while starting).
    """

    def __init__(self, base_dir: Path | None = None, keep_home: bool = True, startup_timeout: float = 90.0) -> None:
        self.base_dir = base_dir
        self.keep_home = keep_home
        self.startup_timeout = startup_timeout
        self.current: AirflowDeployment | None = None
        self.started: list[AirflowDeployment] = []

    def get(
        self,
        extra_env: Mapping[str, str] | None = None,
        fresh: bool = False,
        users: Mapping[str, tuple[str, str]] | None = None,
    ) -> AirflowDeployment:
        env = {k: str(v) for k, v in (extra_env or {}).items()}
        users = dict(users) if users else None
        cur = self.current
        if cur is not None and not fresh and dict(cur.extra_env) == env and cur.users == users and cur.usable():
            return cur
        self.close()
        dep = AirflowDeployment(
            extra_env=env,
            base_dir=self.base_dir,
            keep_home=self.keep_home,
            startup_timeout=self.startup_timeout,
            users=users,
        )
        self.current = dep
        self.started.append(dep)
        dep.start()
        return dep

    def close(self) -> None:
        if self.current is not None:
            dep, self.current = self.current, None
            try:
                dep.stop()
            finally:
                dep.cleanup_home()
