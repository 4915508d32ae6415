"""Risk decisions: throughput across accounts, and latency per stage (a benchmark, not a test).

``python -m benchmarks.risk_latency`` starts its own embedded Postgres (a temporary directory) and measures:

1. ``check``: the pure check function (``core.risk.basic_check``) on a prepared account state;
2. ``throughput``: decisions per second of the risk activity's transaction (``RiskActivities.check_order``,
   called directly: serialize, gather the account and its quotes, decide, take the counters, write the order
   row, the reservation and the audit entry, commit) with 1, 8 and 64 accounts deciding at the same time, each
   account one order after another, through one pool of ``--pool`` connections (the worker's default is
   10). Every 25 decisions an account's reservations are released (as if its orders had finished), so
   accounts stay at a steady size. Each level runs ``--seconds`` after a warm-up; CPU seconds of this
   process and of Postgres (all backends) over the measured window are reported per decision. Before the
   levels, the latency of a one-row commit is measured: whatever is serialized firm-wide (here the totals'
   rows and the audit chain) is held until its commit is flushed, so this bounds decisions per second;
3. with ``--workflow``, also the decision through the order workflow (update-with-start, on a Temporal dev
   server and an in-process worker) next to a bare update-with-start of a workflow that answers at once.

Risk prices the orders from the quote store (``market_quotes``): the paper feed's quotes of every instrument
are written once before the levels (their age limit is an hour here). It prints the figures and writes them
as JSON to ``benchmarks/results/``. The throughput stage uses only the activity's public constructor and
``check_order``, so the same file measures an older checkout that has the quote store (``git show
main:...`` beside this file) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from activities.risk import RiskActivities
from brokers import capabilities
from core.db import apply_migrations
from core.domain import OrderRequest, derive_order_id
from core.instruments import InstrumentCatalog, load_instruments
from core.marketdata import MarketData, Quote, StoredQuote
from core.risk import RiskPolicy, VelocityLimit, basic_check
from core.settings import MarketDataSettings, Settings, TemporalSettings, WorkerSettings
from devstack.services import EmbeddedPostgres
from store.policy import PolicyStore
from store.quotes import upsert_quotes
from store.risk import release_account_reservations

RESULTS = Path(__file__).resolve().parent / "results"
SYMBOLS = ("AAPL", "MSFT", "NVDA", "SPY")
Pool = AsyncConnectionPool[AsyncConnection[DictRow]]
#: Limit prices a little below the default instruments' reference prices (inside every price band).
PRICES = {"AAPL": Decimal("186.00"), "MSFT": Decimal("411.00"), "NVDA": Decimal("117.00"), "SPY": Decimal("548.00")}


def _order(account: str, i: int) -> OrderRequest:
    key = f"{account}/order/{uuid.uuid4().hex}"
    symbol = SYMBOLS[i % len(SYMBOLS)]
    return OrderRequest(
        order_id=derive_order_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=f"{account}-c{i % 50}",  # spread over clients so per-client limits stay out of the way
        client_order_id=key.rsplit("/", 1)[1],
        account=account,
        symbol=symbol,
        side="BUY" if (i // len(SYMBOLS)) % 2 == 0 else "SELL",
        type="LIMIT",
        time_in_force="GTC",
        qty=Decimal(1 + i % 7),
        price=PRICES[symbol] + Decimal(i % 100) / 100,  # never above the reference: within the band
        broker="paper",
        received_at=datetime.now(UTC),
    )


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50": round(q[49], 3),
        "p90": round(q[89], 3),
        "p99": round(q[98], 3),
        "max": round(ms[-1], 3),
    }


async def _publish_quotes(pool: Pool, instruments: InstrumentCatalog) -> None:
    """The paper feed's quotes of every instrument at the catalogue's prices, as the worker's quote writer
    would have stored them: what risk prices the orders at (one tick either side of the mid)."""
    now = datetime.now(UTC)
    rows = [
        StoredQuote(
            Quote(
                symbol=i.symbol,
                source="paper",
                bid=i.initial_price - i.tick_size,
                ask=i.initial_price + i.tick_size,
                at=now,
            ),
            now,
        )
        for i in instruments
    ]
    async with pool.connection() as conn:
        await upsert_quotes(conn, rows)


def _postgres_tree(data_dir: Path) -> list[psutil.Process]:
    with contextlib.suppress(OSError, ValueError, psutil.Error):
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


async def _throughput(
    risk: RiskActivities, pool: Pool, pg_dir: Path, accounts: int, seconds: float, warmup: float
) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:6]
    measuring = False
    stop = False
    counted = 0
    denied = 0
    latencies: list[float] = []

    async def one_account(n: int) -> None:
        nonlocal counted, denied
        account = f"bench-{run_id}-{n}"
        i = 0
        while not stop:
            order = _order(account, i)
            started = time.perf_counter()
            decision = await risk.check_order(order)
            elapsed = time.perf_counter() - started
            if measuring:
                counted += 1
                latencies.append(elapsed)
                denied += not decision.approved
            i += 1
            if i % 25 == 0:  # the account's orders finish: release what they hold
                async with pool.connection() as conn:
                    await release_account_reservations(conn, account)

    tasks = [asyncio.create_task(one_account(n)) for n in range(accounts)]
    try:
        await asyncio.sleep(warmup)
        me = psutil.Process()
        pg = _postgres_tree(pg_dir)
        cpu_me, cpu_pg = _cpu([me]), _cpu(pg)
        measuring = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        wall = time.perf_counter() - started
        cpu_me, cpu_pg = _cpu([me]) - cpu_me, _cpu(pg) - cpu_pg
        n = counted
    finally:
        stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "accounts": accounts,
        "decisions": n,
        "denied": denied,
        "decisions_per_second": round(n / wall, 1),
        "latency_ms": _stats(latencies) if len(latencies) > 2 else {},
        "cpu_ms_per_decision": {
            "bench_process": round(cpu_me * 1000 / max(n, 1), 3),
            "postgres": round(cpu_pg * 1000 / max(n, 1), 3),
        },
        "cores_busy": round((cpu_me + cpu_pg) / wall, 2),
    }


def _settings(url: str, address: str = "127.0.0.1:7233") -> Settings:
    unlimited = VelocityLimit(max_orders=10**6, window_seconds=1)
    return Settings(
        database_url=url,
        temporal=TemporalSettings(address=address, task_queue=f"risk-bench-{uuid.uuid4().hex[:6]}"),
        worker=WorkerSettings(metrics_port=0),
        # Throughput, not limits: every check runs, none refuses (firm-wide limits too, where they exist).
        risk=RiskPolicy(
            velocity_per_client=unlimited,
            velocity_per_symbol=unlimited,
            velocity_global=unlimited,
            max_open_orders_per_client=10**6,
            max_gross_exposure=Decimal(10**12),
            max_position_notional=Decimal(10**12),
            account_capital=Decimal(10**12),
            **_firm_wide_unlimited(),
        ),
        # The quotes are written once at the start: they must not go stale during the run.
        market_data=MarketDataSettings(max_age_seconds=3600),
    )


def _firm_wide_unlimited() -> dict[str, Any]:
    fields = RiskPolicy.model_fields
    return {name: Decimal(10**15) for name in ("firm_max_gross_exposure", "firm_max_open_notional") if name in fields}


async def measure(
    levels: list[int], seconds: float, warmup: float, pool_size: int, workflow_orders: int
) -> dict[str, Any]:
    """Run every stage and return the figures."""
    base = Path(tempfile.mkdtemp(prefix="exodus-risk-bench-"))
    pg_dir = base / "pg"
    pg = EmbeddedPostgres(pg_dir, delete_on_exit=True)
    try:
        await apply_migrations(pg.url)
        settings = _settings(pg.url)
        instruments = load_instruments(None)
        pool = AsyncConnectionPool(
            pg.url,
            connection_class=AsyncConnection[DictRow],
            min_size=pool_size,
            max_size=pool_size,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True)
        figures: dict[str, Any] = {"pool": pool_size}
        await _publish_quotes(pool, instruments)
        risk = RiskActivities(
            pool=pool,
            settings=settings,
            instruments=instruments,
            market=MarketData(settings.market_data, instruments),
            capabilities=capabilities(),
            policy=PolicyStore(settings.risk),
        )

        # 1. The pure check.
        async with pool.connection() as conn:
            limits, state = await risk.gatherer.gather(conn, _order("bench-pure", 0))
        samples = []
        for i in range(3000):
            order = _order("bench-pure", i)
            started = time.perf_counter()
            basic_check(order, limits, state)
            samples.append(time.perf_counter() - started)
        figures["check"] = _stats(samples)

        # The floor of anything serialized firm-wide: one committed one-row write (the WAL flush) at a time.
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_flush (id int PRIMARY KEY, n bigint)")
            await conn.execute("INSERT INTO bench_flush VALUES (1, 0) ON CONFLICT DO NOTHING")
            samples = []
            for _ in range(300):
                started = time.perf_counter()
                await conn.execute("UPDATE bench_flush SET n = n + 1 WHERE id = 1")
                samples.append(time.perf_counter() - started)
        figures["one_row_commit"] = _stats(samples)

        # 2. Decisions per second across accounts.
        figures["throughput"] = []
        for level in levels:
            figures["throughput"].append(await _throughput(risk, pool, pg_dir, level, seconds, warmup))
            row = figures["throughput"][-1]
            print(
                f"  {level:>3} accounts: {row['decisions_per_second']:>8.1f} decisions/s ({row['denied']} denied)"
                f"  p50 {row['latency_ms'].get('p50', 0):.2f} ms  cores busy {row['cores_busy']}",
                flush=True,
            )
        await pool.close()
        if workflow_orders:
            figures.update(await _workflow_stage(pg.url, base, workflow_orders))
        return figures
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


async def _workflow_stage(url: str, base: Path, orders: int) -> dict[str, Any]:
    """The decision through the order workflow, next to a bare update-with-start (the floor)."""
    from temporalio.client import Client, WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from benchmarks.risk_floor_workflow import BareDecision
    from brokers.paper import PaperBroker
    from devstack.services import free_port, start_dev_server
    from sim.journal import PostgresVenueJournal
    from sim.venue import SimVenue
    from store.quotes import QuoteWriter
    from worker.build import build_workers, running_workers
    from worker.dispatcher import ReportDispatcher
    from workflows.order_client import order_config, order_start

    port = free_port()
    log = (base / "temporal.log").open("ab")
    server = start_dev_server(db_file=None, port=port, ui_port=None, log=log)
    pool = AsyncConnectionPool(
        url,
        connection_class=AsyncConnection[DictRow],
        min_size=2,
        max_size=10,
        kwargs={"autocommit": True, "row_factory": dict_row},
    )
    await pool.open(wait=True)
    try:
        settings = _settings(url, f"127.0.0.1:{port}")
        instruments = load_instruments(None)
        venue = SimVenue(
            instruments, name="paper", tick_interval=0, journal=PostgresVenueJournal(pool, url, venue="paper")
        )
        quotes = QuoteWriter.from_settings(pool, settings.market_data)
        broker = PaperBroker(venue, quotes=quotes)
        client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
        await broker.start(ReportDispatcher(client, pool))
        figures: dict[str, Any] = {}
        workers = build_workers(
            client,
            settings,
            pool=pool,
            brokers={"paper": broker},
            instruments=instruments,
            market=MarketData(settings.market_data, instruments),
        )
        floor_q = f"{settings.temporal.task_queue}-floor"
        workers.append(Worker(client, task_queue=floor_q, workflows=[BareDecision]))
        async with running_workers(workers):
            config = order_config(settings, "paper")
            for label in ("workflow", "bare_update_with_start"):
                samples = []
                for i in range(orders + 20):
                    if label == "workflow":
                        start = order_start(_order("bench-workflow", i), settings, config=config)
                        started = time.perf_counter()
                        decision = await start.decide(client)
                        assert decision.approved, decision.reasons
                    else:
                        op: Any = WithStartWorkflowOperation(
                            BareDecision.run,
                            "x",
                            id=f"bare-{uuid.uuid4().hex}",
                            task_queue=floor_q,
                            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                        )
                        started = time.perf_counter()
                        await client.execute_update_with_start_workflow(
                            BareDecision.decision, "ok", start_workflow_operation=op
                        )
                    if i >= 20:  # the first 20 warm the worker up
                        samples.append(time.perf_counter() - started)
                figures[label] = _stats(samples)
        figures["workflow_over_bare_p50"] = round(
            figures["workflow"]["p50"] / figures["bare_update_with_start"]["p50"], 2
        )
        await broker.close()
        await quotes.aclose()
        return figures
    finally:
        await pool.close()
        server.terminate()
        server.wait(15)


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    return "unknown"


def main() -> None:
    """Parse arguments, measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--levels", default="1,8,64", help="concurrent accounts per level (default 1,8,64)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level (default 5)")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per level (default 1.5)")
    parser.add_argument("--pool", type=int, default=10, help="Postgres connections (default 10, the worker's)")
    parser.add_argument(
        "--workflow", type=int, default=0, metavar="N", help="also time N decisions through the order workflow"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    print(f"risk decisions: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, commit {_git_commit()}")
    figures = asyncio.run(measure(levels, args.seconds, args.warmup, args.pool, args.workflow))
    f = figures["check"]
    print(f"  the check alone: p50 {f['p50'] * 1000:.1f} us, p99 {f['p99'] * 1000:.1f} us")
    f = figures["one_row_commit"]
    print(
        f"  a one-row commit (the flush every firm-wide lock waits for): p50 {f['p50']:.3f} ms, p90 {f['p90']:.3f} ms"
    )
    print(f"\n  {'accounts':>8}{'decisions/s':>13}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/dec (bench+pg)':>24}{'cores':>7}")
    for row in figures["throughput"]:
        lat, cpu = row["latency_ms"], row["cpu_ms_per_decision"]
        print(
            f"  {row['accounts']:>8}{row['decisions_per_second']:>13.1f}"
            f"{lat.get('p50', 0):>9.2f}{lat.get('p99', 0):>9.2f}"
            f"{cpu['bench_process']:>14.2f} + {cpu['postgres']:<7.2f}{row['cores_busy']:>7}"
        )
    if "workflow" in figures:
        print("\n  through the workflow (ms, one at a time)")
        for stage in ("workflow", "bare_update_with_start"):
            w = figures[stage]
            print(f"  {stage:<24} p50 {w['p50']:>8.3f}  p90 {w['p90']:>8.3f}  p99 {w['p99']:>8.3f}")
        print(f"  through the workflow / bare update-with-start (p50): {figures['workflow_over_bare_p50']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"risk-latency-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    meta = {"commit": _git_commit(), "cpus": os.cpu_count(), "load_average": os.getloadavg(), "args": vars(args)}
    out.write_text(json.dumps({**meta, "figures": figures}, indent=2, default=str))
    print(f"  written to {out}")


if __name__ == "__main__":
    from core.process import exit_now

    main()
    exit_now(0)  # see core/process.py
