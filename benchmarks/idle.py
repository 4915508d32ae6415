"""What resting orders cost while nothing happens (issue 18): ``python -m benchmarks.idle``.

Starts its own stack (``benchmarks.stack.LocalStack``: embedded Postgres, the Temporal dev server on a SQLite file,
``python -m worker`` with the paper venue, ``python -m api``), then for each level (default 0, 1,000 and 10,000)
places resting limit orders through the REST API until that many rest (GTC buy limits 30 % under the market, small
quantities, spread over desks), lets their bookings settle, and measures a window in which nothing happens:

* CPU seconds per minute of the Temporal server, the worker, the API and Postgres (with its backends);
* history events per hour across every resting order (the sum of ``DescribeWorkflowExecution``'s history length
  of each order, read before and after the window, outside it);
* broker requests per minute (the worker's ``exodus_broker_requests_total``: activities and sweeps).

Placement is measured separately (orders per second, wall time). The paper venue matches every resting order
at each feed step (``--paper-tick-ms``, 200 as in ``make run``): that is the simulator's cost, in the worker
process, and it grows with the orders; ``--paper-tick-ms 600000`` leaves Exodus' own cost.
``--sweep-seconds 0`` runs the same with every order polling by itself (the release before broker sweeps), for
comparison: its polls start 60 s after an order's acknowledgement and back off to 16 minutes, so a short window
right after placement sees the early, dense polls.

    .venv/bin/python -m benchmarks.idle --levels 0,1000 --window 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.procstats import ProcessStats
from benchmarks.stack import LocalStack, StackInfo
from devstack.services import free_port

__all__ = ["broker_requests", "main", "run"]

SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY")
DESKS = 50
ROLES = ("temporal server", "worker", "api", "postgres")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.idle", description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="0,1000,10000", help="resting orders at each level (cumulative)")
    p.add_argument("--window", type=float, default=120.0, help="seconds measured idle at each level")
    p.add_argument("--settle", type=float, default=20.0, help="seconds after placement before the window")
    p.add_argument("--sweep-seconds", type=float, default=30.0, help="EXODUS_ORDERS__SWEEP_SECONDS (0: polls)")
    p.add_argument(
        "--paper-tick-ms",
        type=int,
        default=200,
        help="the paper venue's feed step (it matches every resting order at each step: the simulator's own cost, "
        "which grows with the orders; a large value leaves Exodus' cost; quotes then age, so risk accepts a day-old "
        "quote)",
    )
    p.add_argument("--concurrency", type=int, default=16, help="placement: orders in flight")
    p.add_argument("--output-dir", type=Path, default=Path(__file__).parent / "results")
    return p.parse_args(argv)


def _body(run_id: str, n: int, mids: dict[str, float]) -> dict[str, Any]:
    symbol = SYMBOLS[n % len(SYMBOLS)]
    return {
        "clientId": f"idle-{run_id}-d{n % DESKS}",
        "clientOrderId": f"r{n}",
        "symbol": symbol,
        "side": "BUY",
        "qty": 1 + n % 7,
        "type": "LIMIT",
        "price": f"{mids[symbol] * 0.70:.2f}",
        "timeInForce": "GTC",
    }


async def _mids(database_url: str) -> dict[str, float]:
    """The paper feed's mid of each symbol, from the quote store (waits for the feed's first quotes)."""
    for _ in range(600):
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute(
                "SELECT symbol, bid, ask FROM market_quotes WHERE source = 'paper' AND symbol = ANY(%s)",
                (list(SYMBOLS),),
            )
            rows = await cur.fetchall()
        mids = {sym: (float(bid) + float(ask)) / 2 for sym, bid, ask in rows}
        if len(mids) == len(SYMBOLS):
            return mids
        await asyncio.sleep(0.5)
    raise TimeoutError("no paper quotes")


async def _place(
    http: httpx.AsyncClient, api: str, run_id: str, first: int, count: int, mids: dict[str, float], concurrency: int
) -> list[str]:
    """Place ``count`` resting orders (numbers ``first``...); their workflow ids."""
    numbers = iter(range(first, first + count))
    ids: list[str] = []

    async def one() -> None:
        for n in numbers:
            for attempt in range(5):
                try:
                    r = await http.post(f"{api}/api/v1/orders", json=_body(run_id, n, mids))
                except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
                    if attempt == 4:
                        raise
                    continue
                if r.status_code in (200, 201, 202):
                    break
                raise RuntimeError(f"order {n}: HTTP {r.status_code}: {r.text[:300]}")
            body = r.json()
            if body.get("status") not in (None, "accepted", "pending"):
                raise RuntimeError(f"order {n} not accepted: {r.text[:300]}")
            ids.append(body["workflowId"])

    await asyncio.gather(*(one() for _ in range(concurrency)))
    return ids


async def _wait_resting(client: Client, ids: list[str], timeout: float = 1800) -> None:
    """Until every order is acknowledged by the venue (its workflow's status search attribute is ACCEPTED)."""
    deadline = time.monotonic() + timeout
    while True:
        count = await client.count_workflows("WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running'")
        accepted = await client.count_workflows(
            "WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running' AND ExodusStatus = 'ACCEPTED'"
        )
        if count.count >= len(ids) and accepted.count >= len(ids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{accepted.count} of {len(ids)} orders resting after {timeout:.0f}s")
        await asyncio.sleep(2)


async def _history_events(client: Client, ids: list[str]) -> int:
    sem = asyncio.Semaphore(32)

    async def one(wf: str) -> int:
        async with sem:
            d = await client.get_workflow_handle(wf).describe()
            return int(d.raw_description.workflow_execution_info.history_length)

    return sum(await asyncio.gather(*(one(w) for w in ids)))


def broker_requests(metrics: str) -> dict[str, float]:
    """``exodus_broker_requests_total`` per ``broker:call`` from a Prometheus text page."""
    out: dict[str, float] = {}
    pattern = r'^exodus_broker_requests_total\{broker="([^"]+)",call="([^"]+)"\} ([0-9.e+]+)$'
    for m in re.finditer(pattern, metrics, re.M):
        out[f"{m.group(1)}:{m.group(2)}"] = float(m.group(3))
    return out


async def _broker_requests(http: httpx.AsyncClient, metrics_url: str) -> dict[str, float]:
    r = await http.get(metrics_url)
    r.raise_for_status()
    return broker_requests(r.text)


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    """Run every level; the report (also written to ``opts.output_dir``)."""
    levels = [int(x) for x in opts.levels.split(",")]
    run_id = uuid.uuid4().hex[:8]
    metrics_port = free_port()
    stack = LocalStack(
        extra_env={
            "EXODUS_ORDERS__SWEEP_SECONDS": f"{opts.sweep_seconds:g}",
            "EXODUS_WORKER__METRICS_PORT": str(metrics_port),
            "EXODUS_RISK__MAX_OPEN_ORDERS_PER_CLIENT": "100000",
            "EXODUS_RISK__DUPLICATE_WINDOW_SECONDS": "0",
            # Far from the market (30 % under it), so the random walk neither fills nor bands the orders out.
            "EXODUS_RISK__CLASSES": '{"EQUITY": {"price_band_pct": 50, "leverage": 4}}',
            "EXODUS_PAPER__TICK_INTERVAL_MS": str(opts.paper_tick_ms),
            **({"EXODUS_MARKET_DATA__MAX_AGE_SECONDS": "86400"} if opts.paper_tick_ms > 20000 else {}),
        }
    )
    print("starting the stack ...", flush=True)
    info: StackInfo = await stack.start()
    report: dict[str, Any] = {
        "run_id": run_id,
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "git": _git(),
        "sweep_seconds": opts.sweep_seconds,
        "paper_tick_ms": opts.paper_tick_ms,
        "window_seconds": opts.window,
        "levels": [],
    }
    try:
        client = await Client.connect(info.temporal_address, data_converter=pydantic_data_converter)
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=opts.concurrency + 8)) as http:
            for d in range(DESKS):
                r = await http.put(
                    f"{info.api_url}/api/v1/admin/accounts/idle-{run_id}-d{d}", json={"description": "idle bench"}
                )
                r.raise_for_status()
            assert info.database_url is not None
            mids = await _mids(info.database_url)
            ids: list[str] = []
            with ProcessStats(info.processes) as stats:
                for level in levels:
                    entry: dict[str, Any] = {"resting": level}
                    if level > len(ids):
                        count = level - len(ids)
                        print(f"placing {count} resting orders ...", flush=True)
                        t0 = time.monotonic()
                        ids += await _place(http, info.api_url, run_id, len(ids), count, mids, opts.concurrency)
                        placed = time.monotonic() - t0
                        await _wait_resting(client, ids)
                        rested = time.monotonic() - t0
                        entry["placement"] = {
                            "orders": count,
                            "seconds_to_answer": round(placed, 1),
                            "seconds_until_all_rest": round(rested, 1),
                            "orders_per_second": round(count / placed, 1),
                        }
                        print(f"  placed in {placed:.0f}s, all resting after {rested:.0f}s", flush=True)
                    await asyncio.sleep(opts.settle)
                    events0 = await _history_events(client, ids)
                    calls0 = await _broker_requests(http, metrics)
                    cpu0 = stats.cpu()
                    await asyncio.sleep(opts.window)
                    cpu1 = stats.cpu()
                    calls1 = await _broker_requests(http, metrics)
                    events1 = await _history_events(client, ids)
                    delta = ProcessStats.delta(cpu0, cpu1)
                    cpu, wall = delta.cpu_seconds, delta.wall_seconds
                    minutes = wall / 60
                    entry["cpu_seconds_per_minute"] = {
                        role: round(cpu[role] / minutes, 3) for role in ROLES if role in cpu
                    }
                    entry["cores_busy"] = round(sum(cpu[r] for r in ROLES if r in cpu) / wall, 4)
                    entry["history_events_per_hour"] = round((events1 - events0) * 3600 / wall, 1)
                    entry["history_events_total"] = events1
                    entry["broker_requests_per_minute"] = {
                        k: round((calls1.get(k, 0) - calls0.get(k, 0)) / minutes, 2) for k in sorted(calls1)
                    }
                    report["levels"].append(entry)
                    print(json.dumps(entry), flush=True)
    finally:
        stack.stop()
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    path = opts.output_dir / f"idle-{run_id}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"written to {path}")
    return report


def _cpus() -> int | None:
    import os

    return os.cpu_count()


def _git() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.idle``."""
    asyncio.run(run(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
