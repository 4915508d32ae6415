"""Keep the stack's child processes running: restart one that exits, with backoff, and say so.

``make run`` (``python -m devstack``) supervises the worker, the API, the Temporal dev server and the local FIX
venue. A child that exits is restarted after a delay that doubles with every exit in a row (1 s, 2 s, 4 s ...
up to ``max_delay``); a child that had run for ``stable_after`` seconds before exiting starts again from the
first delay. Every exit and restart is one line on the console, with the end of the child's log. The other
children (and Postgres) keep running meanwhile. ``stop_all()`` stops them all, last started first stopped.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.logs import readable

__all__ = ["Supervised", "Supervisor", "describe_exit", "stop_process"]


def describe_exit(returncode: int) -> str:
    """``code 3`` or ``signal SIGKILL``."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"code {returncode}"


def stop_process(
    proc: subprocess.Popen[bytes] | None, name: str, *, timeout: float = 15, say: Callable[[str], None]
) -> None:
    """SIGTERM, then SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        say(f"  {name} did not stop in {timeout:.0f}s; killing it")
        proc.kill()
        proc.wait()


def _tail(path: Path | None, lines: int) -> str:
    if path is None or lines <= 0:
        return ""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "".join(f"\n      | {readable(line)}" for line in text)


@dataclass
class Supervised:
    """One supervised child."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    #: Exits in a row, each after less than ``stable_after`` seconds of running.
    failures: int = 0
    #: When the next start is due (None: running, or never to be restarted).
    restart_at: float | None = None
    #: How many times it was restarted.
    restarts: int = 0

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self.proc is not None and self.proc.poll() is None


def _print(line: str) -> None:
    print(line, flush=True)


class Supervisor:
    """Restarts children that exit, with backoff."""

    def __init__(
        self,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        stable_after: float = 60.0,
        log_lines: int = 8,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] = _print,
    ) -> None:
        """Restart after ``initial_delay`` doubling to ``max_delay``; reset after ``stable_after`` s of running."""
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.log_lines = log_lines
        self._clock = clock
        self._say = say
        self.children: list[Supervised] = []
        self._stopping = False

    def add(
        self,
        name: str,
        start: Callable[[], subprocess.Popen[bytes]],
        *,
        log: Path | None = None,
        proc: subprocess.Popen[bytes] | None = None,
    ) -> Supervised:
        """Supervise a child: ``proc`` if it is already started, else start it now."""
        child = Supervised(name=name, start=start, log=log)
        self.children.append(child)
        if proc is not None:
            child.proc, child.started_at = proc, self._clock()
        else:
            self._start(child)
        return child

    def get(self, name: str) -> Supervised:
        """The child called ``name``."""
        return next(c for c in self.children if c.name == name)

    def poll(self) -> None:
        """Notice children that exited and restart those whose delay is over (call this every half second)."""
        if self._stopping:
            return
        now = self._clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restart_at = None
                    child.restarts += 1
                    if self._start(child):
                        pid = child.proc.pid if child.proc else "?"
                        self._say(f"  {child.name} restarted (pid {pid}; restart {child.restarts})")
                continue
            if child.proc is None or (code := child.proc.poll()) is None:
                continue
            ran = now - child.started_at
            self._schedule(child, now, f"exited with {describe_exit(code)} after {ran:.0f}s", ran)

    def stop_all(self, *, timeout: float = 15) -> None:
        """Stop every child (last added first) and restart none from now on."""
        self._stopping = True
        for child in reversed(self.children):
            child.restart_at = None
            stop_process(child.proc, child.name, timeout=timeout, say=self._say)

    def _start(self, child: Supervised) -> bool:
        child.started_at = self._clock()
        try:
            child.proc = child.start()
        except Exception as e:  # a start that fails is one more failure in a row
            child.proc = None
            self._schedule(child, self._clock(), f"failed to start ({type(e).__name__}: {e})", 0.0)
            return False
        return True

    def _schedule(self, child: Supervised, now: float, what: str, ran: float) -> None:
        child.failures = 1 if ran >= self.stable_after else child.failures + 1
        delay = min(self.initial_delay * 2 ** (child.failures - 1), self.max_delay)
        child.restart_at = now + delay
        in_a_row = f"; {child.failures} exits in a row" if child.failures > 1 else ""
        self._say(
            f"  {child.name} {what}; restarting it in {delay:g}s{in_a_row}"
            f" (the rest of the stack keeps running){_tail(child.log, self.log_lines)}"
        )
