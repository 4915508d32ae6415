"""``make run``'s supervisor: a child that exits is restarted with backoff and a line saying so; stop stops all."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.supervise import Supervisor, describe_exit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def python(code: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)


def wait_exited(proc: subprocess.Popen[bytes] | None) -> None:
    assert proc is not None
    proc.wait(20)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def supervisor(clock: Clock, lines: list[str]) -> Supervisor:
    s = Supervisor(initial_delay=1, max_delay=8, stable_after=60, clock=clock, say=lines.append)
    yield s
    s.stop_all(timeout=5)


def test_a_crashing_child_is_restarted_with_growing_delays_and_a_line_each_time(
    supervisor: Supervisor, clock: Clock, lines: list[str], tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    starts: list[float] = []

    def start() -> subprocess.Popen[bytes]:
        starts.append(clock.now)
        return python("print('boom: no database'); raise SystemExit(3)", log)

    child = supervisor.add("worker", start, log=log)
    delays = []
    for _ in range(5):
        wait_exited(child.proc)
        supervisor.poll()  # notices the exit, schedules the restart
        assert child.restart_at is not None
        delays.append(child.restart_at - clock.now)
        clock.now += 0.5
        supervisor.poll()
        assert len(starts) == len(delays)  # not before its delay is over
        clock.now = child.restart_at
        supervisor.poll()  # restarts it
    assert delays == [1, 2, 4, 8, 8]
    assert child.restarts == 5 and len(starts) == 6
    exits = [line for line in lines if "exited" in line]
    assert len(exits) == 5
    assert exits[0].startswith("  worker exited with code 3 after 0s; restarting it in 1s (the rest of the stack")
    assert "boom: no database" in exits[0]  # the end of its log
    assert "5 exits in a row" in exits[4] and "restarting it in 8s" in exits[4]
    assert sum("worker restarted (pid" in line for line in lines) == 5


def test_a_child_that_ran_a_while_before_exiting_starts_again_from_the_first_delay(
    supervisor: Supervisor, clock: Clock, lines: list[str]
) -> None:
    child = supervisor.add("API", lambda: python("raise SystemExit(1)"))
    for _ in range(3):
        wait_exited(child.proc)
        supervisor.poll()
        assert child.restart_at is not None
        clock.now = child.restart_at
        supervisor.poll()
    assert child.failures == 3
    clock.now += 61  # this run lasted longer than stable_after
    wait_exited(child.proc)
    supervisor.poll()
    assert child.restart_at == clock.now + 1 and child.failures == 1


def test_a_killed_child_is_named_by_its_signal_and_the_others_keep_running(
    supervisor: Supervisor, clock: Clock, lines: list[str]
) -> None:
    worker = supervisor.add("worker", lambda: python("import time; time.sleep(60)"))
    api = supervisor.add("API", lambda: python("import time; time.sleep(60)"))
    assert worker.proc is not None and api.proc is not None
    api_pid = api.proc.pid
    worker.proc.send_signal(signal.SIGKILL)
    wait_exited(worker.proc)
    supervisor.poll()
    assert "worker exited with signal SIGKILL" in lines[0]
    assert api.running and api.proc.pid == api_pid and api.restart_at is None
    clock.now += 1
    supervisor.poll()
    assert worker.running


def test_a_start_that_raises_counts_as_an_exit_and_is_retried(
    supervisor: Supervisor, clock: Clock, lines: list[str]
) -> None:
    attempts = []

    def start() -> subprocess.Popen[bytes]:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise OSError("port 7233 is busy")
        return python("import time; time.sleep(60)")

    child = supervisor.add("Temporal dev server", start)
    for _ in range(2):
        assert child.restart_at is not None
        clock.now = child.restart_at
        supervisor.poll()
    assert child.running and len(attempts) == 3
    assert "Temporal dev server failed to start (OSError: port 7233 is busy); restarting it in 1s" in lines[0]
    assert "restarting it in 2s" in lines[1]


def test_stop_all_stops_every_child_and_restarts_none(supervisor: Supervisor, clock: Clock) -> None:
    children = [supervisor.add(n, lambda: python("import time; time.sleep(60)")) for n in ("worker", "API")]
    started = time.monotonic()
    supervisor.stop_all(timeout=120)
    # SIGTERM was enough: nothing waited for the stop timeout (a liveness bound far below it, not a speed check).
    assert time.monotonic() - started < 60
    assert all(c.proc is not None and c.proc.returncode == -signal.SIGTERM for c in children)
    clock.now += 100
    supervisor.poll()
    assert not any(c.running for c in children)


def test_describe_exit() -> None:
    assert describe_exit(3) == "code 3"
    assert describe_exit(-9) == "signal SIGKILL"
