"""Orders over Alpaca end to end: through the REST API, order workflows on a real Temporal server, the Alpaca adapter
as broker "alpaca" on its own task queue, the local Alpaca venue over loopback HTTP and WebSocket, Postgres for the
ledger, the adapter's records and the quotes risk prices with (source "alpaca")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from brokers.alpaca.execution import AlpacaBroker
from brokers.alpaca.store import AlpacaStore
from core.domain import OrderStatus
from core.instruments import InstrumentCatalog
from devstack.venues.alpaca.venue import AlpacaVenue, VenueServer
from tests.brokers.alpaca.kit import KEY, SECRET, SpecChecker, alpaca_settings, eventually
from tests.brokers.stackkit import BrokerStack, running_rest_stack
from tests.brokers.venuekit import sim_venue
from tests.harness import make_order
from workflows.order import OrderWorkflow

D = Decimal


@dataclass
class AlpacaStack(BrokerStack[AlpacaVenue, AlpacaBroker]):
    name = "alpaca"
    broker_class = AlpacaBroker
    store_class = AlpacaStore
    id_prefix = "ap"
    order = {"symbol": "AAPL", "side": "BUY", "qty": 10}

    checker: SpecChecker


@pytest.fixture(scope="module")
async def alpaca_stack(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[AlpacaStack]:
    sim = sim_venue(instruments, "alpaca", pool=pool, journal_url=database_url)

    async def ready(broker: AlpacaBroker) -> None:
        assert broker.quote_poller is not None
        await eventually(lambda: broker.quote_poller is not None and broker.quote_poller.published > 0)

    async with running_rest_stack(
        AlpacaStack,
        temporal_env,
        database_url,
        pool,
        instruments,
        server=VenueServer(AlpacaVenue(sim, list(instruments), key_id=KEY, secret_key=SECRET)),
        settings=lambda url: alpaca_settings(url, quote_interval_ms=300),
        checker=SpecChecker(),
        ready=ready,
    ) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _calm(alpaca_stack: AlpacaStack) -> None:
    venue = alpaca_stack.venue
    venue.faults.pending.clear()
    venue.faults.refuse_streams = False
    venue.rate_limit.per_minute, venue.rate_limit.window = 0, 60.0


async def test_order_over_alpaca_is_filled_over_the_stream_and_booked(alpaca_stack: AlpacaStack) -> None:
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=700, type="LIMIT", price="191.00", timeInForce="GTC")
        await s.wait(http, order_id, "PARTIALLY_FILLED")
        await s.venue.step()
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 700 and D(order["avgPrice"]) == D("190.01")
    fills = await s.fills(order_id)
    assert [f["qty"] for f in fills] == [D(500), D(200)]
    alpaca_id = fills[0]["exec_id"].split(":")[0]
    assert [f["exec_id"] for f in fills] == [f"{alpaca_id}:500", f"{alpaca_id}:700"]
    handle = s.stack.client.get_workflow_handle_for(OrderWorkflow.run, f"order-{order_id}")
    result = await handle.result()
    assert result.breaks == []
    state = await s.stack.state(handle)
    assert state.broker_order_id == alpaca_id and [e.kind for e in state.events][-1] == "RECONCILED"
    # Risk priced it from Alpaca's own quotes.
    [quote] = await s.stack.fetch("SELECT bid, ask FROM market_quotes WHERE source = 'alpaca' AND symbol = 'AAPL'")
    assert (quote["bid"], quote["ask"]) == (D("189.99"), D("190.01"))


async def test_cancel_over_alpaca(alpaca_stack: AlpacaStack) -> None:
    s = alpaca_stack
    async with s.stack.api() as http:
        order_id = await s.post(http, type="LIMIT", price="180.00", timeInForce="DAY")
        await s.wait(http, order_id, "ACCEPTED")
        order = await s.cancel(http, order_id)
    assert order["filledQty"] in ("0", "0.0") or D(order["filledQty"]) == 0
    status = await s.broker.get_order_status(order_id)
    assert status is not None and status.status.value == "CANCELED"


async def test_replace_over_alpaca_then_fill_on_the_new_terms(alpaca_stack: AlpacaStack) -> None:
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=10, type="LIMIT", price="180.00", timeInForce="GTC")
        await s.wait(http, order_id, "ACCEPTED")
        await s.amend(http, order_id, 20, "185.00")
        alpaca = await s.broker._current(f"{order_id}.1")
        assert alpaca is not None and alpaca.qty == D(20) and alpaca.limit_price == D("185.00") and alpaca.replaces
        await s.venue.set_mid("AAPL", D("184.00"))
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 20 and D(order["avgPrice"]) == D("184.01")
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_stream_dropped_while_orders_fill_is_caught_up_exactly_once(alpaca_stack: AlpacaStack) -> None:
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        ids = [await s.post(http, qty=600, type="LIMIT", price="186.00", timeInForce="GTC") for _ in range(2)]
        for order_id in ids:
            await s.wait(http, order_id, "ACCEPTED")
        catch_ups = s.broker.catch_ups
        s.venue.faults.refuse_streams = True
        await s.venue.drop_streams()
        await eventually(lambda: not s.broker.stream.listening.is_set())
        await s.venue.set_mid("AAPL", D("185.00"))  # 500 of each fill while nobody listens
        await s.venue.step()  # and the last 100 of each
        for order_id in ids:
            assert await s.fills(order_id) == []  # nothing arrived

        async def refused() -> bool:  # the stream's state reached the risk check: new orders wait for it
            return await s.unavailable(http, 1)

        await eventually(refused, timeout=10, interval=0.3)
        s.venue.faults.refuse_streams = False
        await eventually(lambda: s.broker.catch_ups > catch_ups, timeout=20)
        for order_id in ids:
            order = await s.wait(http, order_id, "FILLED")
            assert D(order["filledQty"]) == 600
    for order_id in ids:
        fills = await s.fills(order_id)
        assert [f["qty"] for f in fills] == [D(500), D(100)] and len({f["exec_id"] for f in fills}) == 2
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_submit_whose_answer_is_lost_is_found_by_client_order_id_and_never_sent_twice(
    alpaca_stack: AlpacaStack,
) -> None:
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    posts = s.venue.requests.get("POST /v2/orders", 0)
    duplicates = s.venue.sim.duplicate_submits
    s.venue.faults.add("drop_after", method="POST", path="/v2/orders")
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=5, type="LIMIT", price="180.00", timeInForce="GTC")
        order = await s.wait(http, order_id, "ACCEPTED")
    assert s.venue.requests.get("POST /v2/orders", 0) == posts + 1  # sent once; the retry asked first
    assert s.venue.sim.duplicate_submits == duplicates
    assert [o for o in await s.broker.open_orders() if o.cl_ord_id == order_id]
    assert "SUBMIT" in [e["kind"] for e in order["events"]]
    async with s.stack.api() as http:
        await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "done"})
        await s.wait(http, order_id, "CANCELED")


async def test_a_429_storm_slows_orders_down_and_rejects_none(alpaca_stack: AlpacaStack) -> None:
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    s.venue.rate_limit.per_minute, s.venue.rate_limit.window = 4, 1.0
    refused = s.venue.rate_limit.refused
    async with s.stack.api() as http:
        ids = await asyncio.gather(*(s.post(http, qty=1) for _ in range(8)))
        orders = [await s.wait(http, order_id, "FILLED", timeout=60) for order_id in ids]
    assert s.venue.rate_limit.refused > refused  # the storm happened
    assert all(D(o["filledQty"]) == 1 for o in orders)
    for order_id in ids:
        assert len(await s.fills(order_id)) == 1


async def test_a_fill_the_stream_missed_is_found_by_the_broker_sweep(alpaca_stack: AlpacaStack) -> None:
    # Issue 18: a swept order arms no poll timer; the sweep (GET /v2/orders?status=open) finds the fill.
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="5", type="LIMIT", price="185.00", broker="alpaca")
    _, handle = await s.stack.submit(order, swept=True)
    await s.stack.wait_for(handle, OrderStatus.ACCEPTED, timeout=30)
    s.venue.faults.refuse_streams = True
    try:
        await s.venue.drop_streams()
        await eventually(lambda: not s.broker.stream.listening.is_set())
        await s.venue.set_mid("AAPL", D("184.00"))
        await s.venue.step()
        await asyncio.sleep(1.0)
        assert await s.fills(order.order_id) == []  # nothing arrived, and nothing asks
        sweeps = s.venue.requests.get("GET /v2/orders", 0)
        async with s.stack.sweeping("alpaca", interval=0.5) as sweeper:
            result = await asyncio.wait_for(handle.result(), 60)
        assert sweeper.sweeps >= 1 and s.venue.requests.get("GET /v2/orders", 0) > sweeps
    finally:
        s.venue.faults.refuse_streams = False
    assert result.status is OrderStatus.FILLED
    assert [f["qty"] for f in await s.fills(order.order_id)] == [D(5)]
    await eventually(lambda: s.broker.stream.listening.is_set(), timeout=30)
    await s.venue.set_mid("AAPL", D("190.00"))
