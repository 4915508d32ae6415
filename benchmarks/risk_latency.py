"""Risk decision latency: in process and through the order workflow (a benchmark, not a test).

``python -m benchmarks.risk_latency [--orders N]`` starts its own embedded Postgres and Temporal dev server
(temporary directories, free ports), an in-process worker with the paper venue, and measures, one order at
a time:

1. ``check``: the pure check function (``core.risk.basic_check``) on a prepared account state;
2. ``activity``: the risk activity's transaction against Postgres (lock, gather the account, decide, write
   the order row, the reservation and the audit entry), called directly;
3. ``workflow``: the decision returned to a client through update-with-start (what the REST call waits for,
   minus HTTP), next to a bare update-with-start of a workflow that answers at once (the floor).

It prints p50/p90/p99 per stage and writes them as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from activities.risk import RiskActivities
from benchmarks.risk_floor_workflow import BareDecision
from brokers import capabilities
from brokers.paper import PaperBroker
from core.db import apply_migrations
from core.domain import OrderRequest, derive_order_id, workflow_id_for
from core.instruments import load_instruments
from core.marketdata import MarketData, QuoteWriter
from core.policy import PolicyStore
from core.risk import RiskPolicy, VelocityLimit, basic_check
from core.settings import MarketDataSettings, Settings, TemporalSettings, WorkerSettings
from devstack.services import EmbeddedPostgres, free_port, start_dev_server
from sim.journal import PostgresVenueJournal
from sim.venue import SimVenue
from worker.build import build_workers, running_workers
from worker.dispatcher import ReportDispatcher
from workflows.order import OrderConfig, OrderWorkflow, OrderWorkflowInput

RESULTS = Path(__file__).resolve().parent / "results"


def _order(account: str, i: int) -> OrderRequest:
    key = f"{account}/order/{uuid.uuid4().hex}"
    return OrderRequest(
        order_id=derive_order_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=f"{account}-c{i % 50}",  # spread over clients so velocity limits stay out of the way
        client_order_id=key.rsplit("/", 1)[1],
        account=account,
        symbol="AAPL",
        side="BUY",  # type: ignore[arg-type]
        type="LIMIT",  # type: ignore[arg-type]
        time_in_force="GTC",  # type: ignore[arg-type]
        qty=Decimal(1 + i % 7),
        price=Decimal("180.00") + Decimal(i % 100) / 100,
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


async def measure(orders: int) -> dict[str, Any]:
    """Run every stage and return the figures."""
    base = Path(tempfile.mkdtemp(prefix="exodus-risk-bench-"))
    pg = EmbeddedPostgres(base / "pg", delete_on_exit=True)
    port = free_port()
    log = (base / "temporal.log").open("ab")
    server = start_dev_server(db_file=None, port=port, ui_port=None, log=log)
    try:
        await apply_migrations(pg.url)
        settings = Settings(
            database_url=pg.url,
            temporal=TemporalSettings(address=f"127.0.0.1:{port}", task_queue=f"risk-bench-{uuid.uuid4().hex[:6]}"),
            worker=WorkerSettings(metrics_port=0),
            # Latency, not limits: velocity limits out of the way (every check still runs).
            risk=RiskPolicy(
                velocity_per_client=VelocityLimit(max_orders=10**6, window_seconds=1),
                velocity_per_symbol=VelocityLimit(max_orders=10**6, window_seconds=1),
                velocity_global=VelocityLimit(max_orders=10**6, window_seconds=1),
                max_open_orders_per_client=10**6,
            ),
            # The venue does not tick here: its quotes (written at start) must not go stale during the run.
            market_data=MarketDataSettings(max_age_seconds=3600),
        )
        instruments = load_instruments(None)
        pool = AsyncConnectionPool(
            pg.url, min_size=2, max_size=10, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
        )
        await pool.open(wait=True)
        venue = SimVenue(
            instruments, name="paper", tick_interval=0, journal=PostgresVenueJournal(pool, pg.url, venue="paper")
        )
        quotes = QuoteWriter.from_settings(pool, settings.market_data)
        broker = PaperBroker(venue, quotes=quotes)
        market = MarketData(settings.market_data, instruments)
        client = await Client.connect(settings.temporal.address, data_converter=pydantic_data_converter)
        await broker.start(ReportDispatcher(client, pool))
        figures: dict[str, Any] = {}

        # 1. The pure check.
        risk = RiskActivities(
            pool=pool,
            settings=settings,
            instruments=instruments,
            market=market,
            capabilities=capabilities(),
            policy=PolicyStore(settings.risk),
        )
        async with pool.connection() as conn:
            limits, state = await risk.gatherer.gather(conn, _order("bench-pure", 0))
        samples = []
        for i in range(orders * 20):
            order = _order("bench-pure", i)
            started = time.perf_counter()
            basic_check(order, limits, state)
            samples.append(time.perf_counter() - started)
        figures["check"] = _stats(samples)

        # 2. The risk activity's transaction, called directly (the account accumulates reservations as it goes).
        samples = []
        for i in range(orders):
            order = _order("bench-activity", i)
            started = time.perf_counter()
            decision = await risk.check_order(order)
            samples.append(time.perf_counter() - started)
            assert decision.approved, decision.reasons
        figures["activity"] = _stats(samples)

        # 3. Through the workflow, next to the bare update-with-start floor.
        workers = build_workers(
            client, settings, pool=pool, brokers={"paper": broker}, instruments=instruments, market=market
        )
        floor_q = f"{settings.temporal.task_queue}-floor"
        workers.append(Worker(client, task_queue=floor_q, workflows=[BareDecision]))
        async with running_workers(workers):
            config = OrderConfig(broker_task_queue=settings.temporal.broker_task_queue("paper"))
            for label, sample_fn in (("workflow", "order"), ("bare_update_with_start", "bare")):
                samples = []
                for i in range(orders + 20):
                    if sample_fn == "order":
                        order = _order("bench-workflow", i)
                        op = WithStartWorkflowOperation(
                            OrderWorkflow.run,
                            OrderWorkflowInput(order=order, config=config),
                            id=workflow_id_for(order.order_id),
                            task_queue=settings.temporal.task_queue,
                            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        )
                        started = time.perf_counter()
                        decision = await client.execute_update_with_start_workflow(
                            OrderWorkflow.decision, order.request_hash, start_workflow_operation=op
                        )
                        assert decision.approved, decision.reasons
                    else:
                        op = WithStartWorkflowOperation(
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
        await pool.close()
        return figures
    finally:
        server.terminate()
        server.wait(15)
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    """Parse arguments, measure, print, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300, help="orders per stage (default 300)")
    args = parser.parse_args()
    figures = asyncio.run(measure(args.orders))
    print("\nrisk decision latency (ms), one order at a time")
    print(f"  {'stage':<24}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
    for stage in ("check", "activity", "workflow", "bare_update_with_start"):
        f = figures[stage]
        print(f"  {stage:<24}{f['p50']:>9.3f}{f['p90']:>9.3f}{f['p99']:>9.3f}{f['max']:>9.3f}")
    print(f"  through the workflow / bare update-with-start (p50): {figures['workflow_over_bare_p50']}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"risk-latency-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps({"orders": args.orders, "figures": figures}, indent=2))
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
