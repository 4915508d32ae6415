"""Real ``python -m worker`` processes for the tests that kill them (durability, order lists' durability, scale-out).

:func:`worker_stack` makes a fresh database, the worker's environment and a :class:`~tests.harness.Stack` (API and
Postgres only: the workers are processes); :func:`start_worker`, :func:`kill_worker` and :func:`stop_worker` run
them; :func:`wait_ready` and :func:`wait_for_log` wait for them; :func:`assert_ledger_is_the_venues` checks the books
against the paper venue's journal afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from core.instruments import load_instruments
from core.settings import OrderSettings, Settings
from tests.conftest import create_database, make_settings, temporal_address
from tests.harness import Stack
from tests.waiting import until

__all__ = [
    "ROOT",
    "WorkerStack",
    "assert_ledger_is_the_venues",
    "kill_worker",
    "paper_venue_orders",
    "start_worker",
    "stop_worker",
    "wait_for_log",
    "wait_ready",
    "worker_stack",
]

ROOT = Path(__file__).resolve().parent.parent


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A ``python -m worker`` process with ``env`` on top of this one's, its output appended to ``log``."""
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def kill_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the worker dies mid-flight, nothing of it shuts down."""
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Stop a worker still running (SIGTERM; killed after 15 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_ready(http: httpx.AsyncClient) -> None:
    """Until the API is ready (a worker up): a worker starting on a loaded machine may take a while."""

    async def ready() -> bool:
        return (await http.get("/ready")).status_code == 200

    await until("the API ready (a worker up)", ready, timeout=120, interval=0.1)


async def wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until ``text`` is in the worker's ``log`` (the worker must not exit meanwhile)."""
    for _ in range(int(timeout / 0.1)):
        if log.exists() and text in log.read_text(errors="replace"):
            return
        assert proc.poll() is None, f"the worker exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{text!r} not in the worker's log after {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class WorkerStack:
    """A fresh database, the settings and environment of its workers, and a stack (API, Postgres) over it."""

    url: str
    settings: Settings
    env: dict[str, str]
    pool: AsyncConnectionPool
    stack: Stack


@contextlib.asynccontextmanager
async def worker_stack(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, database: str, **env: str
) -> AsyncIterator[WorkerStack]:
    """A new database ``database``, and the environment of a paper worker over it (a 40 ms feed, 5 ms latency,
    short broker timeouts and polls) with ``env`` on top; the pool is closed afterwards."""
    url = await create_database(postgres_admin_url, database)
    settings = make_settings(
        url,
        temporal_address(temporal_env),
        orders=OrderSettings(broker_call_timeout_seconds=3, status_poll_seconds=5, immediacy_timeout_seconds=2),
    )
    worker_env = {
        "DATABASE_URL": url,
        "EXODUS_TEMPORAL__ADDRESS": settings.temporal.address,
        "EXODUS_TEMPORAL__TASK_QUEUE": settings.temporal.task_queue,
        "EXODUS_WORKER__METRICS_PORT": "0",
        "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
        "EXODUS_PAPER__TICK_INTERVAL_MS": "40",
        "EXODUS_PAPER__LATENCY_MS": "5",
        **env,
    }
    pool = AsyncConnectionPool(
        url, min_size=1, max_size=5, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
    )
    await pool.open(wait=True)
    try:
        stack = Stack(temporal_env.client, settings, pool, load_instruments(None), brokers={})
        yield WorkerStack(url, settings, worker_env, pool, stack)
    finally:
        await pool.close()


async def paper_venue_orders(stack: Stack) -> list[dict[str, Any]]:
    """Every order the paper venue journaled (``client_order_id``, ``body``); asserts it was sent no second copy."""
    venue = await stack.fetch("SELECT client_order_id, body FROM sim_orders WHERE venue = 'paper'")
    assert await stack.fetch("SELECT * FROM sim_duplicate_submits") == []
    return venue


def assert_ledger_is_the_venues(venue: list[dict[str, Any]], ledger: list[dict[str, Any]]) -> None:
    """The ledger's fills (``exec_id``, ``qty``, ``price``) are exactly the venue's: same executions, quantities
    and prices, each once."""
    venue_fills = {
        (r["exec_id"], Decimal(str(r["last_qty"])), Decimal(str(r["last_price"])))
        for o in venue
        for r in o["body"]["reports"]
        if r["kind"] == "FILL"
    }
    assert {(f["exec_id"], f["qty"], f["price"]) for f in ledger} == venue_fills
    assert len(ledger) == len(venue_fills)
