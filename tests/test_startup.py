"""Start-up and dependencies: the worker and the API wait for Postgres and Temporal instead of exiting, and the
API answers 503 at once (not after 30 s) while Postgres is away, then recovers by itself.

Postgres and Temporal are reached through ``TcpProxy``s the tests cut and restore, so the real servers the rest of
the suite uses never stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.startup import StartupAborted, wait_until_up
from tests.conftest import create_database, make_settings, temporal_address
from tests.proxy import TcpProxy, postgres_target, proxied_postgres_url

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent


async def wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
    # Generous: a liveness wait, not a timing assertion (a loaded 2-core CI machine starts Python slowly).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text(errors="replace") if log.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"the process exited with {proc.returncode} before logging {text!r}:\n{content}")
        await asyncio.sleep(0.2)
    raise AssertionError(f"{text!r} not logged in {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


async def exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    # Never block the event loop: the proxies the process talks through run on it.
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return proc.poll()


async def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        if await exit_code(proc, 20) is None:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture
async def proxies(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str
) -> AsyncIterator[tuple[TcpProxy, TcpProxy, str]]:
    """A Postgres proxy, a Temporal proxy (both down) and the proxied URL of a fresh database."""
    url = await create_database(postgres_admin_url, "exodus_startup")
    pg = TcpProxy(postgres_target(url))
    host, _, port = temporal_address(temporal_env).rpartition(":")
    temporal = TcpProxy((host or "127.0.0.1", int(port)))
    yield pg, temporal, proxied_postgres_url(url, pg)
    await pg.stop()
    await temporal.stop()


async def test_worker_waits_for_postgres_then_temporal_and_then_runs(
    proxies: tuple[TcpProxy, TcpProxy, str], tmp_path: Path
) -> None:
    pg, temporal, url = proxies
    log = tmp_path / "worker.log"
    env = {
        "DATABASE_URL": url,
        "EXODUS_TEMPORAL__ADDRESS": temporal.address,
        "EXODUS_TEMPORAL__TASK_QUEUE": f"startup-{uuid.uuid4().hex[:8]}",
        "EXODUS_WORKER__METRICS_PORT": "0",
        "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
        "EXODUS_PAPER__TICK_INTERVAL_MS": "0",
    }
    proc = start("worker", env, log)
    try:
        text = await wait_for_log(log, f"waiting for Postgres at 127.0.0.1:{pg.port}/", proc)
        assert "retrying in 0.5s" in text
        await wait_for_log(log, "retrying in 1s", proc)  # it backs off, and is still running
        await pg.start()
        await wait_for_log(log, f"waiting for Temporal at {temporal.address}:", proc)
        await temporal.start()
        await wait_for_log(log, "worker polling", proc)
    finally:
        code = await stop(proc)
    assert code == 0, log.read_text()[-3000:]


async def test_api_waits_for_postgres_and_temporal_then_serves(
    proxies: tuple[TcpProxy, TcpProxy, str], tmp_path: Path, reserve_port: Callable[[], int]
) -> None:
    pg, temporal, url = proxies
    log = tmp_path / "api.log"
    port = reserve_port()
    env = {"DATABASE_URL": url, "EXODUS_TEMPORAL__ADDRESS": temporal.address, "EXODUS_API__PORT": str(port)}
    proc = start("api", env, log)
    try:
        await wait_for_log(log, f"waiting for Postgres at 127.0.0.1:{pg.port}/", proc)
        await pg.start()
        await wait_for_log(log, f"waiting for Temporal at {temporal.address}:", proc)
        await temporal.start()
        await wait_for_log(log, "Uvicorn running", proc)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200
    finally:
        code = await stop(proc)
    assert code in (0, -signal.SIGTERM), log.read_text()[-3000:]  # uvicorn re-raises the signal it handled


async def test_a_stop_signal_while_waiting_ends_the_worker_cleanly(
    proxies: tuple[TcpProxy, TcpProxy, str], tmp_path: Path
) -> None:
    _, temporal, url = proxies
    log = tmp_path / "worker.log"
    env = {
        "DATABASE_URL": url,
        "EXODUS_TEMPORAL__ADDRESS": temporal.address,
        "EXODUS_WORKER__METRICS_PORT": "0",
        "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
    }
    proc = start("worker", env, log)
    await wait_for_log(log, "waiting for Postgres", proc)
    proc.send_signal(signal.SIGTERM)
    assert await exit_code(proc, 10) == 0, log.read_text()


async def test_api_answers_503_at_once_while_postgres_is_away_and_recovers_by_itself(
    proxies: tuple[TcpProxy, TcpProxy, str], temporal_env: WorkflowEnvironment
) -> None:
    pg, _, url = proxies
    await pg.start()
    settings = make_settings(url, temporal_address(temporal_env))
    app = create_app(settings, temporal=temporal_env.client)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://exodus.test") as http:
            assert (await http.get("/api/v1/orders")).status_code == 200
            await pg.stop()  # Postgres goes away: every pooled connection is dead
            for _ in range(3):
                started = time.monotonic()
                r = await http.get("/api/v1/orders")
                elapsed = time.monotonic() - started
                assert r.status_code == 503, r.text
                assert r.headers["Retry-After"] == "2" and r.json()["status"] == "error"
                assert elapsed < settings.api.database_wait_seconds + 3, elapsed
            await pg.start()  # Postgres is back: the pool reconnects without anybody's help
            deadline = time.monotonic() + 30
            while (status := (await http.get("/api/v1/orders")).status_code) != 200:
                assert status == 503 and time.monotonic() < deadline, status
                await asyncio.sleep(0.5)


async def test_waiting_backs_off_up_to_the_maximum_and_stops_on_request(caplog: pytest.LogCaptureFixture) -> None:
    # The schedule is read from what wait_until_up announces, and each wait is checked to last at least that
    # long: nothing here depends on how fast the machine is (an upper bound would, under load).
    tries: list[float] = []
    stop_event = asyncio.Event()

    async def attempt() -> None:
        tries.append(time.monotonic())
        if len(tries) == 6:
            stop_event.set()  # asked to stop while waiting after the sixth failure
        raise OSError("connection refused")

    with caplog.at_level(logging.WARNING, logger="core.startup"), pytest.raises(StartupAborted):
        async with asyncio.timeout(60):  # a liveness bound: without the stop it would retry forever
            await wait_until_up(
                "Thing", "here:1", attempt, retry_on=(OSError,), stop=stop_event, initial_delay=0.1, max_delay=0.4
            )
    announced = [float(m) for m in re.findall(r"retrying in ([0-9.]+)s", caplog.text)]
    assert announced == [0.1, 0.2, 0.4, 0.4, 0.4, 0.4]
    assert "waiting for Thing at here:1: connection refused; retrying in 0.1s" in caplog.text
    waited = [b - a for a, b in zip(tries, tries[1:], strict=False)]
    assert len(tries) == 6, "it stopped on request instead of trying again"
    assert all(w >= d - 0.02 for w, d in zip(waited, announced, strict=False)), (waited, announced)


async def test_only_unreachability_is_waited_out() -> None:
    async def attempt() -> None:
        raise ValueError("a broken migration")

    with pytest.raises(ValueError):
        await wait_until_up("Thing", "here:1", attempt, retry_on=(OSError,))
