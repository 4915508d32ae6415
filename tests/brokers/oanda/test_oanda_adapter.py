"""The OANDA adapter's own rules beyond the contract: a possibly-filled order is never sent again (OANDA's
deduplication covers pending orders only), even where ``@<clientID>`` cannot find a filled order (the transactions
decide), and a heartbeat naming an unseen transaction starts a catch-up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import OrderSide, OrderStatus, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.oanda.kit import ACCOUNT, TOKEN, Forwarder, OandaPair, eventually, running_pair

D = Decimal


def _market(cid: str | None = None, qty: int = 10000) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=cid or "EX" + uuid.uuid4().hex[:16].upper(),
        account="contract",
        symbol="EURUSD",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.IOC,
        qty=D(qty),
    )


@pytest.fixture(params=[True, False], ids=["at-id-finds-done-orders", "at-id-finds-pending-orders-only"])
async def pair(
    request: pytest.FixtureRequest, pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> AsyncIterator[tuple[OandaPair, ReportCollector]]:
    reports = ReportCollector()
    sink = Forwarder()
    sink.target = reports
    async with running_pair(pool, instruments, sink=sink, lookup_done_orders=request.param) as p:
        yield p, reports


def _posts(p: OandaPair) -> int:
    return p.venue.requests.get(f"POST /v3/accounts/{ACCOUNT}/orders", 0)


async def test_a_filled_order_is_looked_up_and_never_sent_again(pair: tuple[OandaPair, ReportCollector]) -> None:
    p, reports = pair
    order = _market()
    assert (await p.broker.submit_order(order)).accepted
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
    posts = _posts(p)
    again = await p.broker.submit_order(order)
    assert not again.accepted and again.reason and again.reason.startswith("DUPLICATE_CLIENT_ORDER_ID")
    assert _posts(p) == posts  # nothing sent: OANDA would have made a second order
    status = await p.broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED and status.cum_qty == order.qty
    # The hazard is real at the venue: the same client id on a filled order makes a new order.
    async with httpx.AsyncClient(base_url=p.server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        body = {
            "order": {
                "type": "MARKET",
                "instrument": "EUR_USD",
                "units": "1000",
                "timeInForce": "FOK",
                "clientExtensions": {"id": order.cl_ord_id},
            }
        }
        r = await http.post(f"/v3/accounts/{ACCOUNT}/orders", json=body)
    assert r.status_code == 201 and "orderFillTransaction" in r.json()


async def test_a_lost_answer_of_a_filled_order_is_found_and_not_resent(pair: tuple[OandaPair, ReportCollector]) -> None:
    p, reports = pair
    order = _market()
    p.venue.faults.add("drop_after", method="POST", path=r"^/orders$")
    with pytest.raises(BrokerUnavailable):
        await p.broker.submit_order(order)
    status = await p.broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED and len(status.fills) == 1
    posts = _posts(p)
    assert not (await p.broker.submit_order(order)).accepted
    assert _posts(p) == posts
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
    assert len([r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]) == 1


async def test_a_heartbeat_naming_an_unseen_transaction_starts_a_catch_up(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> None:
    reports = ReportCollector()
    sink = Forwarder()
    sink.target = reports
    async with running_pair(pool, instruments, sink=sink, heartbeat_seconds=0.2) as p:
        # The stream loses a transaction (the venue publishes nothing for one fill): the heartbeat says so.
        listeners = set(p.venue._listeners)
        p.venue._listeners.clear()
        order = _market()
        async with httpx.AsyncClient(base_url=p.server.base_url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            body = {
                "order": {
                    "type": "MARKET",
                    "instrument": "EUR_USD",
                    "units": "1000",
                    "timeInForce": "FOK",
                    "clientExtensions": {"id": order.cl_ord_id},
                }
            }
            r = await http.post(f"/v3/accounts/{ACCOUNT}/orders", json=body)
            assert r.status_code == 201
        p.venue._listeners.update(listeners)
        await eventually(lambda: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
