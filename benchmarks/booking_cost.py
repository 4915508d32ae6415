"""What a booking and a paper-venue journal save cost, alone: wall time, the caller's CPU and Postgres' CPU.

``python -m benchmarks.booking_cost`` starts an embedded Postgres (migrated), then, one at a time:

* ``--orders`` bookings (``persist_order``) of a market order filled by one report, as the workflow's final
  booking sends it (three events, one fill, the reservation released); each order's row is written first, as
  its risk decision does, outside the measured calls;
* as many journal saves of the paper venue (``PostgresVenueJournal.save``: the order and its two reports),
  each followed by its delivery mark (``mark_delivered``), as the venue's delivery does.

It prints, per call: wall time p50/p90, the calling process' CPU and the CPU of Postgres' processes (the
postmaster and its backends over the measured loop, background work included). Run it on two versions of the
code one after the other, alternating, to compare them on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from benchmarks.procstats import tree_cpu_seconds
from core.db import apply_migrations
from core.domain import (
    Fill,
    OrderEvent,
    OrderEventKind,
    OrderRequest,
    OrderSide,
    OrderState,
    OrderStatus,
    OrderType,
    RiskDecision,
    SubmitOrder,
    TimeInForce,
    derive_order_id,
    utcnow,
)
from core.instruments import load_instruments
from core.settings import Settings
from devstack.services import EmbeddedPostgres
from sim.feed import PriceFeed
from sim.journal import PostgresVenueJournal
from sim.matching import MatchingEngine
from store.orders import received_row, write_order
from store.policy import PolicyStore

__all__ = ["main"]


def _order(n: int, run: str) -> OrderRequest:
    key = f"bench-{run}/order/o{n}"
    return OrderRequest(
        order_id=derive_order_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=f"bench-{run}",
        client_order_id=f"o{n}",
        account=f"bench-{run}-{n % 8}",
        broker="paper",
        symbol=("AAPL", "MSFT", "NVDA", "SPY")[n % 4],
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        qty=Decimal(1 + n % 97),
        submitted_by="bench",
        received_at=utcnow(),
    )


def _final_booking(order: OrderRequest, n: int) -> PersistInput:
    now = datetime.now(UTC)
    exec_id = f"x-{order.order_id}-{n}"
    fill = Fill(
        exec_id=exec_id,
        order_id=order.order_id,
        broker=order.broker,
        account=order.account,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        price=Decimal("100"),
        filled_at=now,
    )
    events = [
        OrderEvent(seq=1, at=now, kind=OrderEventKind.SUBMIT, status=OrderStatus.SUBMITTED),
        OrderEvent(seq=2, at=now, kind=OrderEventKind.ACCEPT, status=OrderStatus.ACCEPTED),
        OrderEvent(seq=3, at=now, kind=OrderEventKind.FILL, status=OrderStatus.FILLED, data={"exec_id": exec_id}),
    ]
    state = OrderState(
        request=order,
        status=OrderStatus.FILLED,
        qty=order.qty,
        filled_qty=order.qty,
        avg_price=Decimal("100"),
        fills=[fill],
        events=events,
        created_at=now,
        updated_at=now,
    )
    return PersistInput(snapshot=OrderSnapshot.of(state), events=events, fills=[fill], final=True)


class _Meter:
    def __init__(self, pg_pid: int) -> None:
        self.pg_pid = pg_pid
        self.walls: list[float] = []
        self.cpu = 0.0
        self.pg0 = 0.0
        self.pg = 0.0

    def start(self) -> None:
        self.pg0 = tree_cpu_seconds(self.pg_pid)

    def stop(self) -> None:
        self.pg = tree_cpu_seconds(self.pg_pid) - self.pg0

    def line(self, what: str) -> str:
        n = len(self.walls)
        walls = sorted(self.walls)
        p90 = walls[int(n * 0.9)]
        return (
            f"{what:34s} {n:5d} calls  wall p50 {statistics.median(walls) * 1000:6.2f} ms  p90 {p90 * 1000:6.2f} ms"
            f"  caller CPU {self.cpu * 1000 / n:5.2f} ms  Postgres CPU {self.pg * 1000 / n:5.2f} ms"
        )


async def _measure(pool: AsyncConnectionPool[Any], url: str, pg_pid: int, orders: int) -> None:
    run = uuid.uuid4().hex[:6]
    settings = Settings()
    instruments = load_instruments(None)
    store = OrderStoreActivities(pool=pool, instruments=instruments, policy=PolicyStore(settings.risk))
    requests = [_order(n, run) for n in range(orders)]
    async with pool.connection() as conn:
        for order in requests:
            decision = RiskDecision(order_id=order.order_id, approved=True, decided_at=utcnow())
            await write_order(conn, received_row(order, decision), booking=False)
    bookings = [_final_booking(order, n) for n, order in enumerate(requests)]
    meter = _Meter(pg_pid)
    meter.start()
    for booking in bookings:
        wall, cpu = time.perf_counter(), time.process_time()
        await store.persist_order(booking)
        meter.walls.append(time.perf_counter() - wall)
        meter.cpu += time.process_time() - cpu
    meter.stop()
    print(meter.line("booking (persist_order)"))

    feed_instruments = list(instruments)
    engine = MatchingEngine(PriceFeed(feed_instruments, seed=1), feed_instruments, venue="paper", clock=utcnow)
    journal = PostgresVenueJournal(pool, url, venue=f"bench-{run}")
    await journal.acquire()
    results = [
        engine.submit(
            SubmitOrder(
                cl_ord_id=o.order_id,
                account=o.account,
                symbol=o.symbol,
                side=o.side,
                type=OrderType.MARKET,
                time_in_force=TimeInForce.DAY,
                qty=o.qty,
            )
        )
        for o in requests
    ]
    meter = _Meter(pg_pid)
    meter.start()
    for result in results:
        wall, cpu = time.perf_counter(), time.process_time()
        await journal.save(result)
        await journal.mark_delivered([r.exec_id for r in result.reports])
        meter.walls.append(time.perf_counter() - wall)
        meter.cpu += time.process_time() - cpu
    await asyncio.sleep(1.5)  # marks that wait for a save are written (and counted) too
    meter.stop()
    await journal.release()
    print(meter.line("journal save + delivery mark"))


async def run(orders: int) -> None:
    base = Path(tempfile.mkdtemp(prefix="exodus-booking-cost-"))
    server = EmbeddedPostgres(base / "pg", delete_on_exit=True)
    try:
        await apply_migrations(server.url)
        pg_pid = int((base / "pg" / "postmaster.pid").read_text().splitlines()[0])
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            server.url,
            connection_class=AsyncConnection[DictRow],
            min_size=2,
            max_size=4,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True)
        try:
            await _measure(pool, server.url, pg_pid, orders)
        finally:
            await pool.close()
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.booking_cost", description=__doc__)
    p.add_argument("--orders", type=int, default=500, help="bookings and journal saves measured (default 500)")
    args = p.parse_args(argv)
    asyncio.run(run(args.orders))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
