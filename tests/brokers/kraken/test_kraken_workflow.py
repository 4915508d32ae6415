"""Orders over Kraken end to end: through the REST API, order workflows on a real Temporal server, the Kraken adapter
as broker "kraken" on its own task queue, the local Kraken venue over loopback HTTP, Postgres for the ledger, the
adapter's records and the quotes risk prices with (source "kraken")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from brokers.kraken.execution import KrakenBroker
from brokers.kraken.store import KrakenStore
from core.instruments import InstrumentCatalog
from devstack.venues.kraken.venue import KrakenVenue, VenueServer
from tests.brokers.kraken.kit import KEY, SECRET, SpecChecker, eventually, kraken_settings
from tests.brokers.stackkit import BrokerStack, running_rest_stack
from tests.brokers.venuekit import sim_venue
from workflows.order import OrderWorkflow

D = Decimal


@dataclass
class KrakenStack(BrokerStack[KrakenVenue, KrakenBroker]):
    name = "kraken"
    broker_class = KrakenBroker
    store_class = KrakenStore
    id_prefix = "kr"
    order = {"symbol": "BTC-USD", "side": "BUY", "qty": "0.01", "timeInForce": "GTC"}

    checker: SpecChecker


@pytest.fixture(scope="module")
async def kraken_stack(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[KrakenStack]:
    sim = sim_venue(instruments, "kraken", pool=pool, journal_url=database_url)
    server = VenueServer(KrakenVenue(sim, list(instruments), api_key=KEY, api_secret=SECRET))

    async def ready(broker: KrakenBroker) -> None:
        await eventually(lambda: server.venue.requests.get("Ticker", 0) > 0)
        await asyncio.sleep(0.5)

    async with running_rest_stack(
        KrakenStack,
        temporal_env,
        database_url,
        pool,
        instruments,
        server=server,
        settings=lambda url: kraken_settings(url, quote_interval_ms=300),
        checker=SpecChecker(),
        ready=ready,
    ) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _calm(kraken_stack: KrakenStack) -> None:
    kraken_stack.venue.faults.pending.clear()
    kraken_stack.venue.throttle(0, 1.0)


async def test_order_over_kraken_is_filled_in_pieces_and_booked(kraken_stack: KrakenStack) -> None:
    s = kraken_stack
    await s.venue.set_mid("BTC-USD", D("65000.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty="3", type="LIMIT", price="65100.00")
        await s.wait(http, order_id, "PARTIALLY_FILLED")
        await s.venue.step()
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 3
    fills = await s.fills(order_id)
    assert [f["qty"] for f in fills] == [D(2), D(1)] and all(f["exec_id"].startswith("T") for f in fills)
    handle = s.stack.client.get_workflow_handle_for(OrderWorkflow.run, f"order-{order_id}")
    assert (await handle.result()).breaks == []
    # Risk priced it from Kraken's own tickers.
    [quote] = await s.stack.fetch("SELECT bid, ask FROM market_quotes WHERE source = 'kraken' AND symbol = 'BTC-USD'")
    assert quote["bid"] < quote["ask"]


async def test_cancel_over_kraken(kraken_stack: KrakenStack) -> None:
    s = kraken_stack
    async with s.stack.api() as http:
        order_id = await s.post(http, type="LIMIT", price="60000.00")
        await s.wait(http, order_id, "ACCEPTED")
        await s.cancel(http, order_id)
    status = await s.broker.get_order_status(order_id)
    assert status is not None and status.status.value == "CANCELED"


async def test_amend_over_kraken_then_fill_on_the_new_terms(kraken_stack: KrakenStack) -> None:
    s = kraken_stack
    await s.venue.set_mid("BTC-USD", D("65000.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty="0.01", type="LIMIT", price="60000.00")
        await s.wait(http, order_id, "ACCEPTED")
        await s.amend(http, order_id, "0.02", "64000.00")
        await s.venue.set_mid("BTC-USD", D("63900.00"))
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == D("0.02")
    await s.venue.set_mid("BTC-USD", D("65000.00"))


async def test_submit_whose_answer_is_lost_is_found_by_cl_ord_id_and_never_sent_twice(
    kraken_stack: KrakenStack,
) -> None:
    s = kraken_stack
    adds = s.venue.requests.get("AddOrder", 0)
    s.venue.faults.add("drop_after", method="AddOrder")
    async with s.stack.api() as http:
        order_id = await s.post(http, type="LIMIT", price="60000.00")
        await s.wait(http, order_id, "ACCEPTED")
        assert s.venue.requests.get("AddOrder", 0) == adds + 1  # sent once; the retry asked first
        await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "done"})
        await s.wait(http, order_id, "CANCELED")


async def test_a_market_order_executed_behind_a_502_is_booked_once(kraken_stack: KrakenStack) -> None:
    s = kraken_stack
    await s.venue.set_mid("BTC-USD", D("65000.00"))
    adds = s.venue.requests.get("AddOrder", 0)
    s.venue.faults.add("error_after", method="AddOrder", status=502)
    async with s.stack.api() as http:
        order_id = await s.post(http, qty="0.01")
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == D("0.01") and len(await s.fills(order_id)) == 1
    assert s.venue.requests.get("AddOrder", 0) == adds + 1


async def test_a_rate_limit_storm_slows_orders_down_and_rejects_none(kraken_stack: KrakenStack) -> None:
    s = kraken_stack
    await s.venue.set_mid("BTC-USD", D("65000.00"))
    s.venue.throttle(3, 3.0)
    throttled = s.venue.throttled
    async with s.stack.api() as http:
        ids = await asyncio.gather(*(s.post(http, qty="0.001") for _ in range(8)))
        orders = [await s.wait(http, order_id, "FILLED", timeout=60) for order_id in ids]
    assert s.venue.throttled > throttled
    assert all(D(o["filledQty"]) == D("0.001") for o in orders)


async def test_a_swept_kraken_order_rests_with_no_history_and_its_fill_comes_from_the_adapters_poll(
    kraken_stack: KrakenStack,
) -> None:
    # Issue 18: Kraken declares mass status (OpenOrders); a swept order arms no poll timer, the sweep finds nothing
    # to signal while it rests, and the adapter's own poll of open orders and trades brings its fill.
    from temporalio.api.enums.v1 import EventType

    from core.domain import OrderStatus
    from tests.harness import make_order

    s = kraken_stack
    await s.venue.set_mid("BTC-USD", D("65000.00"))
    order = make_order(symbol="BTC-USD", qty="0.01", type="LIMIT", price="60000.00", broker="kraken")
    _, handle = await s.stack.submit(order, swept=True)
    await s.stack.wait_for(handle, OrderStatus.ACCEPTED, timeout=30)

    async def booked_working() -> bool:
        rows = await s.stack.fetch("SELECT status FROM orders WHERE order_id = %s", order.order_id)
        return bool(rows) and rows[0]["status"] == "ACCEPTED"

    await eventually(booked_working, timeout=30)
    before = [e async for e in handle.fetch_history_events()]
    asked = s.venue.requests.get("OpenOrders", 0)
    async with s.stack.sweeping("kraken", interval=0.3) as sweeper:
        await eventually(lambda: sweeper.sweeps >= 3, timeout=30)
        assert sweeper.last is not None and order.order_id not in sweeper.last.signaled
    assert s.venue.requests.get("OpenOrders", 0) >= asked + 3  # the sweeps asked Kraken, one call each
    after = [e async for e in handle.fetch_history_events()]
    assert len(after) == len(before), [EventType.Name(e.event_type) for e in after[len(before) :]]
    await s.venue.set_mid("BTC-USD", D("59000.00"))
    await s.venue.step()
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.FILLED
    events = [e async for e in handle.fetch_history_events()]
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]  # no poll timer
    assert [f["qty"] for f in await s.fills(order.order_id)] == [D("0.01")]
    await s.venue.set_mid("BTC-USD", D("65000.00"))
