"""The event stream: latency from a fill booked to the event received, with 100 clients (a benchmark, not a test).

``python -m benchmarks.stream_latency`` starts its own embedded Postgres (a temporary directory) and an API
process (uvicorn, in a child process, with the stream only: no Temporal is needed to serve it), connects
``--clients`` WebSocket clients (default 100, no filter: each gets every event), and books ``--rate`` fills per
second for ``--seconds`` through the workflow's own booking (``OrderStoreActivities.persist_order``: the order
row, its FILL event, the fill, the position and cash, in one transaction). Each fill is a separate order, as
each order is booked by its own workflow.

Latency of one delivery: the time a client parsed the FILL event, less its ``bookedAt`` (Postgres'
``clock_timestamp()`` in the commit's trigger, the same host clock): the commit, the NOTIFY, the API process's
read of the table, the fan-out, the socket and the client's parse. Printed as p50/p90/p99/max over every
(fill, client) pair, with the booking's own latency beside it, and written as JSON to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import websockets
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from activities.persistence import OrderSnapshot, OrderStoreActivities, PersistInput
from core.db import apply_migrations
from core.domain import Fill, OrderEvent, OrderSide, OrderStatus, derive_order_id
from core.instruments import load_instruments
from core.settings import Settings, StreamSettings, TemporalSettings
from devstack.services import EmbeddedPostgres
from store.policy import PolicyStore

RESULTS = Path(__file__).resolve().parent / "results"


def _settings(url: str) -> Settings:
    return Settings(
        database_url=url,
        temporal=TemporalSettings(address="127.0.0.1:1"),
        stream=StreamSettings(heartbeat_seconds=5, client_buffer=10000),
    )


def _serve(url: str, port: int) -> None:  # in the child process
    import uvicorn

    from api.main import create_app

    async def main() -> None:
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            url,
            connection_class=AsyncConnection[DictRow],
            min_size=2,
            max_size=10,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True)
        app = create_app(_settings(url), pool=pool)
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", ws="websockets-sansio"
            )
        )
        await server.serve()

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fill(i: int, run: str) -> PersistInput:
    now = datetime.now(UTC)
    key = f"bench-{run}/order/{i}"
    order_id = derive_order_id(key)
    symbol = ("AAPL", "MSFT", "NVDA", "SPY")[i % 4]
    snap = OrderSnapshot(
        order_id=order_id,
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=f"bench-c{i % 10}",
        client_order_id=f"co-{i}",
        account=f"bench-a{i % 10}",
        symbol=symbol,
        side="BUY",
        type="MARKET",
        time_in_force="DAY",
        qty=Decimal(1),
        price=None,
        stop_price=None,
        expire_at=None,
        broker="paper",
        broker_order_id=f"b-{i}",
        status=OrderStatus.FILLED,
        filled_qty=Decimal(1),
        avg_price=Decimal(100),
        reason=None,
        flags=[],
        version=1,
        created_at=now,
        updated_at=now,
    )
    event = OrderEvent(seq=1, at=now, kind="FILL", status=OrderStatus.FILLED, detail="1 @ 100")
    fill = Fill(
        exec_id=f"x-{run}-{i}",
        order_id=order_id,
        broker="paper",
        account=snap.account,
        symbol=symbol,
        side=OrderSide.BUY,
        qty=Decimal(1),
        price=Decimal(100),
        filled_at=now,
    )
    return PersistInput(snapshot=snap, events=[event], fills=[fill])


def _stats(samples: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    if len(ms) < 3:
        return {"n": len(ms)}
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "n": len(ms),
        "p50": round(q[49], 2),
        "p90": round(q[89], 2),
        "p99": round(q[98], 2),
        "max": round(ms[-1], 2),
    }


async def measure(clients: int, rate: float, seconds: float) -> dict[str, Any]:
    """Run the benchmark and return the figures."""
    base = Path(tempfile.mkdtemp(prefix="exodus-stream-bench-"))
    pg = EmbeddedPostgres(base / "pg", delete_on_exit=True)
    server: BaseProcess | None = None
    try:
        await apply_migrations(pg.url)
        port = _free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(pg.url, port), daemon=True)
        server.start()
        url = f"ws://127.0.0.1:{port}/api/v1/stream"
        deadline = time.monotonic() + 60
        while True:
            try:
                async with websockets.connect(url, open_timeout=2):
                    break
            except (OSError, websockets.InvalidHandshake, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

        latencies: list[float] = []
        received = [0] * clients
        ready = asyncio.Event()
        connected = 0

        async def client(n: int) -> None:
            nonlocal connected
            async with websockets.connect(url, open_timeout=30, max_queue=None) as ws:
                json.loads(await ws.recv())  # hello
                connected += 1
                if connected == clients:
                    ready.set()
                async for raw in ws:
                    now = time.time()
                    message = json.loads(raw)
                    if message["type"] == "event" and message["kind"] == "FILL":
                        booked = datetime.fromisoformat(message["bookedAt"].replace("Z", "+00:00")).timestamp()
                        latencies.append(now - booked)
                        received[n] += 1

        tasks = [asyncio.create_task(client(n)) for n in range(clients)]
        await asyncio.wait_for(ready.wait(), 120)

        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            pg.url,
            connection_class=AsyncConnection[DictRow],
            min_size=4,
            max_size=4,
            kwargs={"autocommit": True, "row_factory": dict_row},
            open=False,
        )
        await pool.open(wait=True)
        settings = _settings(pg.url)
        store = OrderStoreActivities(pool=pool, instruments=load_instruments(None), policy=PolicyStore(settings.risk))
        run = uuid.uuid4().hex[:6]
        booking: list[float] = []
        count = int(rate * seconds)
        started = time.perf_counter()
        for i in range(count):
            due = started + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            t = time.perf_counter()
            await store.persist_order(_fill(i, run))
            booking.append(time.perf_counter() - t)
        # Let the last deliveries arrive.
        end = time.monotonic() + 30
        while sum(received) < count * clients and time.monotonic() < end:
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
        return {
            "at": datetime.now(UTC).isoformat(),
            "clients": clients,
            "fills": count,
            "rate_per_second": rate,
            "deliveries": sum(received),
            "missing_deliveries": count * clients - sum(received),
            "booked_to_received_ms": _stats(latencies),
            "booking_ms": _stats(booking),
        }
    finally:
        if server is not None:
            server.terminate()
            server.join(10)
        pg.stop()


def main() -> None:
    """Parse the options, run, print and write the figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=100, help="connected WebSocket clients (default 100)")
    p.add_argument("--rate", type=float, default=20.0, help="fills booked per second (default 20)")
    p.add_argument("--seconds", type=float, default=15.0, help="how long fills are booked (default 15)")
    args = p.parse_args()
    figures = asyncio.run(measure(args.clients, args.rate, args.seconds))
    print(json.dumps(figures, indent=2))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"stream-latency-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
