"""Start (or find) the processes a benchmark measures: Postgres, the Temporal dev server, the worker, the API.

``LocalStack`` starts the same process layout as ``make run`` (``devstack``): an embedded Postgres, the
Temporal dev server with ``DEV_SERVER_FLAGS`` and Exodus' search attributes on a SQLite file, ``python -m
worker`` and ``python -m api``, plus the ceiling worker (``python -m benchmarks.ceiling``), all on free ports
and in a temporary data directory. ``RunningStack`` uses a stack that is already up (``--use-running``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from core.db import apply_migrations
from devstack.services import (
    DEV_SERVER_FLAGS,
    DEV_SERVER_SQLITE_FLAGS,
    EmbeddedPostgres,
    free_port,
    start_dev_server,
    wait_for_port,
)

__all__ = ["CEILING_TASK_QUEUE", "LocalStack", "ProcessRef", "RunningStack", "StackInfo"]

ROOT = Path(__file__).resolve().parent.parent
CEILING_TASK_QUEUE = "bench-ceiling"


@dataclass
class ProcessRef:
    """A process whose CPU and memory a benchmark reports (``pids`` may hold a tree's root only)."""

    role: str
    pid: int | None
    #: Count the process' children too (Postgres backends).
    with_children: bool = False


@dataclass
class StackInfo:
    """Where the stack under test listens, and its processes."""

    api_url: str
    temporal_address: str
    namespace: str
    task_queue: str
    database_url: str | None
    processes: list[ProcessRef] = field(default_factory=list)
    data_dir: Path | None = None
    temporal_db: str = "sqlite file"
    ceiling_task_queue: str = "bench-ceiling"
    env: dict[str, str] = field(default_factory=dict)
    #: Flags of ``temporal server start-dev`` beyond ports and search attributes (own stack only).
    temporal_flags: list[str] = field(default_factory=list)


def _stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_module(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _wait_ready(
    api_url: str, procs: dict[str, tuple[subprocess.Popen[bytes], Path]], timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while time.monotonic() < deadline:
            for name, (proc, log) in procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if (await http.get(f"{api_url}/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"the stack was not ready after {timeout:.0f}s")


class LocalStack:
    """The whole stack on free ports in a temporary directory, stopped and deleted on exit."""

    def __init__(
        self,
        *,
        keep: bool = False,
        temporal_db: str = "file",
        extra_env: dict[str, str] | None = None,
        temporal_args: list[str] | None = None,
    ) -> None:
        """``temporal_db`` is ``file`` (SQLite file, as ``make run``) or ``memory``; ``keep`` keeps the data dir."""
        self._temporal_args = temporal_args or []
        self._keep = keep
        self._temporal_db = temporal_db
        self._extra_env = extra_env or {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pg: EmbeddedPostgres | None = None
        self._env: dict[str, str] = {}
        #: The second worker (two-worker level); its pid is set only while it runs.
        self.second_worker = ProcessRef("worker 2", None)
        self.data_dir = Path(tempfile.mkdtemp(prefix="exodus-bench-"))
        self.logs = self.data_dir / "logs"
        self.logs.mkdir()

    async def start(self) -> StackInfo:
        """Start everything and wait until the API says it is ready."""
        self._pg = EmbeddedPostgres(self.data_dir / "postgres", delete_on_exit=True)
        url = self._pg.url
        await apply_migrations(url)
        pg_pid = _postmaster_pid(self.data_dir / "postgres")

        temporal_port = free_port()
        db_file = self.data_dir / "temporal" / "temporal.db" if self._temporal_db == "file" else None
        self._procs["temporal"] = start_dev_server(
            db_file=db_file,
            port=temporal_port,
            ui_port=None,
            log=(self.logs / "temporal.log").open("ab"),
            extra_args=self._temporal_args,
        )
        address = f"127.0.0.1:{temporal_port}"
        api_port = free_port()
        env = {
            "DATABASE_URL": url,
            "EXODUS_DATA_DIR": str(self.data_dir),
            "EXODUS_TEMPORAL__ADDRESS": address,
            "EXODUS_TEMPORAL__START_DEV_SERVER": "false",
            "EXODUS_API__PORT": str(api_port),
            "EXODUS_API__HOST": "127.0.0.1",
            "EXODUS_WORKER__METRICS_PORT": "0",
            "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
            "EXODUS_PAPER__LATENCY_MS": "0",
            # The load generator's connections idle while their order runs (seconds at concurrency 200): keep them
            # open as long as its client does (benchmarks.load.Connections), not uvicorn's default 5 s.
            "EXODUS_API__KEEP_ALIVE_SECONDS": "300",
            **self._extra_env,
        }
        self._env = env
        started: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        for role, module in (("worker", "worker"), ("api", "api"), ("ceiling worker", "benchmarks.ceiling")):
            log = self.logs / f"{role.replace(' ', '-')}.log"
            proc = _start_module(module, {**env, "BENCH_CEILING_TASK_QUEUE": CEILING_TASK_QUEUE}, log)
            self._procs[role] = proc
            started[role] = (proc, log)
        api_url = f"http://127.0.0.1:{api_port}"
        wait_for_port("127.0.0.1", api_port, timeout=90, process=self._procs["api"])
        await _wait_ready(api_url, started)
        return StackInfo(
            api_url=api_url,
            temporal_address=address,
            namespace="default",
            task_queue="exodus-orders",
            database_url=url,
            processes=[
                ProcessRef("temporal server", self._procs["temporal"].pid),
                ProcessRef("worker", self._procs["worker"].pid),
                self.second_worker,
                ProcessRef("api", self._procs["api"].pid),
                ProcessRef("ceiling worker", self._procs["ceiling worker"].pid),
                ProcessRef("postgres", pg_pid, with_children=True),
            ],
            data_dir=self.data_dir,
            temporal_db="sqlite file" if db_file else "in-memory",
            ceiling_task_queue=CEILING_TASK_QUEUE,
            temporal_flags=(DEV_SERVER_SQLITE_FLAGS if db_file else []) + DEV_SERVER_FLAGS + self._temporal_args,
            env={k: v for k, v in env.items() if k != "DATABASE_URL"},
        )

    async def add_worker(self, timeout: float = 90) -> None:
        """Start the second worker and wait until it polls the order queue."""
        log = self.logs / "worker-2.log"
        offset = log.stat().st_size if log.exists() else 0
        env = {**self._env, "EXODUS_WORKER__BROKERS": '["paper"]', "EXODUS_WORKER__STANDBY": "true"}
        proc = _start_module("worker", env, log)
        self._procs["worker 2"] = proc
        deadline = time.monotonic() + timeout
        while "worker polling" not in log.read_bytes()[offset:].decode(errors="replace"):
            if proc.poll() is not None:
                raise RuntimeError(f"the second worker exited with {proc.returncode}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the second worker did not start in {timeout:.0f}s:\n{_tail(log)}")
            await asyncio.sleep(0.2)
        self.second_worker.pid = proc.pid

    def remove_worker(self) -> None:
        """Stop the second worker (gracefully)."""
        _stop(self._procs.pop("worker 2", None))
        self.second_worker.pid = None

    def stop(self) -> None:
        """Stop every process (API first, Temporal last) and delete the data dir unless kept."""
        for role in ("api", "ceiling worker", "worker 2", "worker", "temporal"):
            _stop(self._procs.get(role))
        if self._pg is not None:
            self._pg.stop()
        if not self._keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _postmaster_pid(data_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    return None


class RunningStack:
    """A stack somebody else started (``make run``); only the ceiling worker is started here."""

    def __init__(
        self, *, api_url: str, temporal_address: str, namespace: str, task_queue: str, database_url: str | None
    ) -> None:
        """Point at the running API and Temporal server."""
        self._info = StackInfo(
            api_url=api_url.rstrip("/"),
            temporal_address=temporal_address,
            namespace=namespace,
            task_queue=task_queue,
            database_url=database_url,
            temporal_db="as configured by the running stack",
        )
        self._ceiling: subprocess.Popen[bytes] | None = None
        self.logs = Path(tempfile.mkdtemp(prefix="exodus-bench-logs-"))

    async def start(self) -> StackInfo:
        """Start the ceiling worker against the running server and find the stack's processes."""
        env = {
            "EXODUS_TEMPORAL__ADDRESS": self._info.temporal_address,
            "EXODUS_TEMPORAL__NAMESPACE": self._info.namespace,
            "BENCH_CEILING_TASK_QUEUE": f"{CEILING_TASK_QUEUE}-{os.getpid()}",
        }
        log = self.logs / "ceiling-worker.log"
        self._ceiling = _start_module("benchmarks.ceiling", env, log)
        self._info.env = env
        self._info.ceiling_task_queue = env["BENCH_CEILING_TASK_QUEUE"]
        await _wait_ready(self._info.api_url, {"ceiling worker": (self._ceiling, log)})
        host, _, port = self._info.temporal_address.rpartition(":")
        api_port = int(self._info.api_url.rsplit(":", 1)[-1].split("/")[0])
        self._info.processes = [
            ProcessRef("temporal server", _listener(int(port))),
            ProcessRef("worker", _find_module_process("worker", connected_to=int(port))),
            ProcessRef("api", _listener(api_port)),
            ProcessRef("ceiling worker", self._ceiling.pid),
        ]
        return self._info

    def stop(self) -> None:
        """Stop the ceiling worker."""
        _stop(self._ceiling)


def _listener(port: int) -> int | None:
    # Read-only discovery of who serves a port (for CPU figures); may need privileges for other users' processes.
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return int(conn.pid)
    return None


def _find_module_process(module: str, *, connected_to: int | None = None) -> int | None:
    # Read-only: the `python -m worker` process, for CPU figures only. Other `python -m worker` processes may
    # run on the machine (test suites); prefer the one connected to this stack's Temporal port.
    candidates: list[psutil.Process] = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if len(cmd) >= 3 and cmd[-2:] == ["-m", module] and "python" in os.path.basename(cmd[0]):
            candidates.append(proc)
    if connected_to is not None:
        for proc in candidates:
            with contextlib.suppress(psutil.Error):
                if any(c.raddr and c.raddr.port == connected_to for c in proc.net_connections(kind="tcp")):
                    return int(proc.pid)
    return int(candidates[0].pid) if len(candidates) == 1 else None
