"""Orders over Interactive Brokers end to end: through the REST API, order workflows on a real Temporal server, the
IB adapter (real ib_async) as broker "ib" on its own task queue, the local TWS venue over a loopback socket,
Postgres for the ledger, the adapter's records and the quotes risk prices with (source "ib")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from temporalio.testing import WorkflowEnvironment

from brokers.ib.execution import IBBroker
from core.instruments import InstrumentCatalog
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue, IBVenueServer
from devstack.venues.ib.wire import IN
from sim.venue import SimVenue
from store.quotes import QuoteWriter
from tests.brokers.ib.kit import eventually, ib_settings
from tests.brokers.stackkit import BrokerStack, running_stack
from tests.conftest import make_settings, temporal_address
from workflows.order import OrderWorkflow

D = Decimal


@dataclass
class IBStack(BrokerStack[IBVenue, IBBroker]):
    name = "ib"
    broker_class = IBBroker
    id_prefix = "ib"
    order = {"symbol": "AAPL", "side": "BUY", "qty": 10}
    fill_columns = "exec_id, qty, price, fee"

    async def reconnected(self, before: int) -> None:
        await eventually(lambda: self.broker.connections > before and self.broker.caught_up.is_set(), timeout=20)


@pytest.fixture(scope="module")
async def ib_stack(
    temporal_env: WorkflowEnvironment, database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> AsyncIterator[IBStack]:
    sim = SimVenue(instruments, name="ibvenue", tick_interval=0)
    server = IBVenueServer(IBVenue(sim, list(instruments), accounts=[LOCAL_IB_ACCOUNT]))
    await server.start()
    settings = make_settings(
        database_url,
        temporal_address(temporal_env),
        ib=ib_settings(server.port, client_id=21, quote_interval_ms=300, quote_symbols=["AAPL"]),
    )
    quotes = QuoteWriter.from_settings(pool, settings.market_data)
    broker = IBBroker.from_settings(settings, pool=pool, name="ib", instruments=instruments, quotes=quotes)

    async def ready() -> None:
        assert broker.quote_poller is not None
        await eventually(lambda: broker.quote_poller is not None and broker.quote_poller.published > 0)

    async with running_stack(
        temporal_env, settings, pool, instruments, "ib", broker, server=server, quotes=quotes, ready=ready
    ) as stack:
        yield IBStack(stack, server)


@pytest.fixture(autouse=True)
def _calm(ib_stack: IBStack) -> None:
    ib_stack.venue.faults.clear()
    ib_stack.venue.accepting = True


async def test_order_over_ib_is_filled_from_exec_details_and_booked_with_commissions(ib_stack: IBStack) -> None:
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=700, type="LIMIT", price="191.00", timeInForce="GTC")
        await s.wait(http, order_id, "PARTIALLY_FILLED")
        await s.venue.step()
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 700 and D(order["avgPrice"]) == D("190.01")
    fills = await s.fills(order_id)
    assert [f["qty"] for f in fills] == [D(500), D(200)]
    assert [f["fee"] for f in fills] == [D("2.5"), D("1.0")]  # IB's commission reports
    handle = s.stack.client.get_workflow_handle_for(OrderWorkflow.run, f"order-{order_id}")
    result = await handle.result()
    assert result.breaks == []
    # Risk priced it from IB's own quotes (reqMktData snapshots).
    [quote] = await s.stack.fetch("SELECT bid, ask FROM market_quotes WHERE source = 'ib' AND symbol = 'AAPL'")
    assert quote["bid"] is not None and quote["ask"] is not None


async def test_cancel_over_ib(ib_stack: IBStack) -> None:
    s = ib_stack
    async with s.stack.api() as http:
        order_id = await s.post(http, type="LIMIT", price="180.00", timeInForce="DAY")
        await s.wait(http, order_id, "ACCEPTED")
        await s.cancel(http, order_id)
    status = await s.broker.get_order_status(order_id)
    assert status is not None and status.status.value == "CANCELED"


async def test_modify_over_ib_then_fill_on_the_new_terms(ib_stack: IBStack) -> None:
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=10, type="LIMIT", price="180.00", timeInForce="GTC")
        await s.wait(http, order_id, "ACCEPTED")
        placed = s.venue.served.get(IN.PLACE_ORDER, 0)
        await s.amend(http, order_id, 20, "185.00")
        [venue_order] = [o for o in s.venue.orders.values() if o.order_ref.startswith(order_id)]
        assert venue_order.order_ref == f"{order_id}.1" and venue_order.qty == 20 and venue_order.lmt == D("185")
        assert s.venue.served[IN.PLACE_ORDER] == placed + 1  # one placeOrder under the same id: a modify
        await s.venue.set_mid("AAPL", D("184.00"))
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 20 and D(order["avgPrice"]) == D("184.01")
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_disconnect_while_orders_fill_then_the_reconnect_books_every_fill_once(ib_stack: IBStack) -> None:
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        ids = [await s.post(http, qty=600, type="LIMIT", price="186.00", timeInForce="GTC") for _ in range(2)]
        for order_id in ids:
            await s.wait(http, order_id, "ACCEPTED")
        before = s.broker.connections
        s.venue.accepting = False  # the nightly reset: the socket drops and stays down
        s.venue.drop_all()
        await eventually(lambda: not s.broker.caught_up.is_set())
        await s.venue.set_mid("AAPL", D("185.00"))  # 500 of each fill while nobody listens
        await s.venue.step()  # and the last 100 of each
        for order_id in ids:
            assert await s.fills(order_id) == []

        async def refused() -> bool:  # the session's state reached the risk check: new orders wait for it
            return await s.unavailable(http, 1)

        await eventually(refused, timeout=15, interval=0.3)
        s.venue.accepting = True
        await s.reconnected(before)
        for order_id in ids:
            order = await s.wait(http, order_id, "FILLED")
            assert D(order["filledQty"]) == 600
    for order_id in ids:
        fills = await s.fills(order_id)
        assert [f["qty"] for f in fills] == [D(500), D(100)] and len({f["exec_id"] for f in fills}) == 2
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_a_rolled_back_next_valid_id_never_reuses_an_id(ib_stack: IBStack) -> None:
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        first = await s.post(http, qty=1)
        await s.wait(http, first, "FILLED")
        before = s.broker.connections
        s.venue.faults.next_valid_id = 1  # a Gateway restarted overnight
        s.venue.drop_all()
        await s.reconnected(before)
        second = await s.post(http, qty=1)
        await s.wait(http, second, "FILLED")
    used = {o.order_ref: o.order_id for o in s.venue.orders.values()}
    assert used[second] > used[first]


async def test_a_lost_submission_is_found_by_order_ref_and_never_sent_twice(ib_stack: IBStack) -> None:
    s = ib_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    placed = s.venue.served.get(IN.PLACE_ORDER, 0)
    s.venue.faults.add("drop_after", "submit")  # carried out, then the connection drops before the answer
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=5, type="LIMIT", price="180.00", timeInForce="GTC")
        order = await s.wait(http, order_id, "ACCEPTED")
        assert s.venue.served[IN.PLACE_ORDER] == placed + 1  # sent once; the retry looked it up by orderRef
        assert [o for o in s.venue.orders.values() if o.order_ref == order_id]
        assert "SUBMIT" in [e["kind"] for e in order["events"]]
        await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "done"})
        await s.wait(http, order_id, "CANCELED")
