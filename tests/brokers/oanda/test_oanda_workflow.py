"""Orders over OANDA end to end: through the REST API, order workflows on a real Temporal server, the OANDA adapter
as broker "oanda" on its own task queue, the local OANDA venue over loopback HTTP (REST and the chunked transaction
stream), Postgres for the ledger, the adapter's records and the quotes risk prices with (source "oanda")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from brokers.oanda.execution import OandaBroker
from brokers.oanda.store import OandaStore
from brokers.sessions import session_check_for
from core.domain import CancelRequest, OrderStatus
from core.instruments import InstrumentCatalog
from devstack.venues.oanda.venue import OandaVenue, VenueServer
from tests.brokers.oanda.kit import ACCOUNT, TOKEN, SpecChecker, eventually, oanda_settings
from tests.brokers.stackkit import BrokerStack, running_rest_stack
from tests.brokers.venuekit import sim_venue
from tests.harness import make_order
from workflows.order import OrderWorkflow

D = Decimal


@dataclass
class OandaStack(BrokerStack[OandaVenue, OandaBroker]):
    name = "oanda"
    broker_class = OandaBroker
    store_class = OandaStore
    id_prefix = "oa"
    order = {"symbol": "EURUSD", "side": "BUY", "qty": 10000}

    checker: SpecChecker

    def posts(self) -> int:
        return self.venue.requests.get(f"POST /v3/accounts/{ACCOUNT}/orders", 0)


@pytest.fixture(scope="module")
async def oanda_stack(
    temporal_env: WorkflowEnvironment,
    database_url: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
) -> AsyncIterator[OandaStack]:
    sim = sim_venue(instruments, "oanda", pool=pool, journal_url=database_url)
    await _forget(pool, OandaStack.name)

    async def ready(broker: OandaBroker) -> None:
        assert broker.price_poller is not None
        await eventually(lambda: broker.price_poller is not None and broker.price_poller.published > 0)

    async with running_rest_stack(
        OandaStack,
        temporal_env,
        database_url,
        pool,
        instruments,
        server=VenueServer(OandaVenue(sim, list(instruments), token=TOKEN, account_id=ACCOUNT, heartbeat_seconds=0.5)),
        settings=lambda url: oanda_settings(url, quote_interval_ms=300, quote_symbols=["EURUSD", "GBPUSD"]),
        checker=SpecChecker(),
        ready=ready,
    ) as stack:
        yield stack


async def _forget(pool: AsyncConnectionPool, name: str) -> None:
    """A fresh venue: the cursor of an earlier run's venue (other transaction ids) must not be read on."""
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM oanda_cursor WHERE broker = %s", (name,))


@pytest.fixture(autouse=True)
def _calm(oanda_stack: OandaStack) -> None:
    venue = oanda_stack.venue
    venue.faults.pending.clear()
    venue.faults.refuse_streams = False
    venue.rate_limit.limit, venue.rate_limit.window = 0, 1.0


async def test_a_fill_the_stream_missed_is_found_by_the_broker_sweep(oanda_stack: OandaStack) -> None:
    # First in the module: other tests' adapters, streams and lookups would catch the fill up before the sweep.
    # Issue 18: a swept order arms no poll timer; the sweep (transactions since the last id, pendingOrders) finds
    # the fill.
    s = oanda_stack
    # Any lookup reads every transaction since the cursor (OANDA's catch-up), this order's fill included: earlier
    # tests' working orders, which poll, are canceled first, so that the sweep is the only one asking.
    working = "SELECT order_id FROM orders WHERE broker = 'oanda' AND status IN ('ACCEPTED', 'PARTIALLY_FILLED')"
    for row in await s.stack.fetch(working):
        other = s.stack.client.get_workflow_handle(f"order-{row['order_id']}")
        await other.signal(OrderWorkflow.cancel, CancelRequest(reason="the sweep test runs alone", requested_by="test"))
        await asyncio.wait_for(other.result(), 60)  # its last lookup (the reconciliation) done too
    await s.venue.set_mid("EURUSD", D("1.08500"))
    order = make_order(symbol="EURUSD", qty="10000", type="LIMIT", price="1.07000", broker="oanda")
    _, handle = await s.stack.submit(order, swept=True)
    await s.stack.wait_for(handle, OrderStatus.ACCEPTED, timeout=30)
    s.venue.faults.refuse_streams = True
    try:
        refused, opened = s.venue.streams_refused, s.venue.streams_opened
        s.venue.drop_streams()
        # Once a reconnection is refused, no stream is open or opening (the adapter has one at a time): nothing
        # can catch the fill up on connecting.
        await eventually(lambda: s.venue.streams_refused > refused, timeout=30)
        await s.venue.set_mid("EURUSD", D("1.06900"))
        await s.venue.step()
        await asyncio.sleep(1.0)
        assert await s.fills(order.order_id) == []  # nothing arrived, and nothing asks
        async with s.stack.sweeping("oanda", interval=0.5) as sweeper:
            result = await asyncio.wait_for(handle.result(), 60)
        assert sweeper.sweeps >= 1
    finally:
        s.venue.faults.refuse_streams = False
    assert result.status is OrderStatus.FILLED
    assert [f["qty"] for f in await s.fills(order.order_id)] == [D(10000)]
    await s.venue.set_mid("EURUSD", D("1.08500"))
    # The stream back (the session is logged on again) before the next test sends orders.
    await eventually(lambda: s.broker.caught_up.is_set() and s.venue.streams_opened > opened, timeout=30)

    async def logged_on() -> bool:
        async with s.stack.pool.connection() as conn:
            return await session_check_for("oanda")(conn, "any") is None

    await eventually(logged_on, timeout=30)


async def test_order_over_oanda_is_filled_and_booked_priced_by_oanda_quotes(oanda_stack: OandaStack) -> None:
    s = oanda_stack
    await s.venue.set_mid("EURUSD", D("1.08500"))
    await eventually(lambda: s.broker.price_poller is not None and s.broker.price_poller.published > 2)
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=2500000, type="LIMIT", price="1.08600", timeInForce="GTC")
        await s.wait(http, order_id, "PARTIALLY_FILLED")
        await s.venue.step()
        await s.venue.step()
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 2500000 and D(order["avgPrice"]) == D("1.08501")
    fills = await s.fills(order_id)
    assert [f["qty"] for f in fills] == [D(1000000), D(1000000), D(500000)]
    assert all(f["exec_id"].isdigit() for f in fills)  # OANDA's ORDER_FILL transaction ids
    handle = s.stack.client.get_workflow_handle_for(OrderWorkflow.run, f"order-{order_id}")
    result = await handle.result()
    assert result.breaks == []
    [quote] = await s.stack.fetch("SELECT bid, ask FROM market_quotes WHERE source = 'oanda' AND symbol = 'EURUSD'")
    assert (quote["bid"], quote["ask"]) == (D("1.08499"), D("1.08501"))


async def test_cancel_and_replace_over_oanda(oanda_stack: OandaStack) -> None:
    s = oanda_stack
    await s.venue.set_mid("EURUSD", D("1.08500"))
    async with s.stack.api() as http:
        canceled = await s.post(http, type="LIMIT", price="1.05000", timeInForce="GTC")
        amended = await s.post(http, type="LIMIT", price="1.05000", timeInForce="GTC")
        await s.wait(http, canceled, "ACCEPTED")
        await s.wait(http, amended, "ACCEPTED")
        await s.cancel(http, canceled)
        await s.amend(http, amended, 20000, "1.06000")
        view, _ = await s.broker._current(f"{amended}.1")
        assert view is not None and view.qty == 20000 and view.price == D("1.06000") and view.replaces
        await s.venue.set_mid("EURUSD", D("1.05900"))
        order = await s.wait(http, amended, "FILLED")
    assert D(order["filledQty"]) == 20000 and D(order["avgPrice"]) == D("1.05901")
    await s.venue.set_mid("EURUSD", D("1.08500"))


async def test_lost_answer_of_a_filled_market_order_is_found_and_never_sent_twice(oanda_stack: OandaStack) -> None:
    # OANDA would take a resend of a filled order's client id as a new order: the adapter must look it up first.
    s = oanda_stack
    await s.venue.set_mid("EURUSD", D("1.08500"))
    posts = s.posts()
    s.venue.faults.add("drop_after", method="POST", path=r"^/orders$")
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=30000, type="MARKET", timeInForce="IOC")
        order = await s.wait(http, order_id, "FILLED")
    assert s.posts() == posts + 1  # sent once: the retry asked first
    assert D(order["filledQty"]) == 30000
    assert len(await s.fills(order_id)) == 1


async def test_stream_dropped_while_orders_fill_is_caught_up_exactly_once(oanda_stack: OandaStack) -> None:
    s = oanda_stack
    await s.venue.set_mid("EURUSD", D("1.08500"))
    async with s.stack.api() as http:
        ids = [await s.post(http, qty=1500000, type="LIMIT", price="1.07000", timeInForce="GTC") for _ in range(2)]
        for order_id in ids:
            await s.wait(http, order_id, "ACCEPTED")
        catch_ups = s.broker.catch_ups
        s.venue.faults.refuse_streams = True
        s.venue.drop_streams()
        await s.venue.set_mid("EURUSD", D("1.06900"))  # 1,000,000 of each fill while nobody listens
        await s.venue.step()  # and the last 500,000 of each

        async def refused() -> bool:  # the stream's state reached the risk check: new orders wait for it
            return await s.unavailable(http, 1000)

        await eventually(refused, timeout=10, interval=0.3)
        s.venue.faults.refuse_streams = False
        await eventually(lambda: s.broker.catch_ups > catch_ups, timeout=20)
        for order_id in ids:
            order = await s.wait(http, order_id, "FILLED")
            assert D(order["filledQty"]) == 1500000
    for order_id in ids:
        fills = await s.fills(order_id)
        assert [f["qty"] for f in fills] == [D(1000000), D(500000)] and len({f["exec_id"] for f in fills}) == 2
    await s.venue.set_mid("EURUSD", D("1.08500"))


async def test_a_429_storm_slows_orders_down_and_rejects_none(oanda_stack: OandaStack) -> None:
    s = oanda_stack
    await s.venue.set_mid("EURUSD", D("1.08500"))
    s.venue.rate_limit.limit, s.venue.rate_limit.window = 4, 1.0
    refused = s.venue.rate_limit.refused
    async with s.stack.api() as http:
        ids = await asyncio.gather(*(s.post(http, qty=1000, type="MARKET", timeInForce="IOC") for _ in range(8)))
        orders = [await s.wait(http, order_id, "FILLED", timeout=60) for order_id in ids]
    assert s.venue.rate_limit.refused > refused  # the storm happened
    assert all(D(o["filledQty"]) == 1000 for o in orders)
    for order_id in ids:
        assert len(await s.fills(order_id)) == 1
