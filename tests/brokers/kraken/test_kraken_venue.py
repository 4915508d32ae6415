"""The local Kraken venue answers as Kraken does (authentication, nonces, error strings, cl_ord_id, deadline,
counters), every answer checked against Kraken's spot REST document; and the adapter's recovery against it:
"502 after execution", a refused nonce on AddOrder, a late duplicate, a throttle storm."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.kraken.client import sign
from core.domain import OrderSide, OrderStatus, OrderType, SubmitOrder, TimeInForce
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.kraken.kit import KEY, SECRET, KrakenPair, SpecChecker, running_pair


@pytest.fixture
async def pair(pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> AsyncIterator[KrakenPair]:
    async with running_pair(pool, instruments, sink=ReportCollector()) as p:
        yield p


class Raw:
    """Signed requests sent by hand, each answer checked against Kraken's document."""

    def __init__(self, pair: KrakenPair) -> None:
        self.url = pair.server.base_url
        self.checker = SpecChecker()
        self.nonce = 10**18  # above the adapter's (microseconds)

    async def post(
        self, method: str, fields: dict[str, Any], *, secret: str = SECRET, key: str = KEY, nonce: int | None = None
    ) -> dict[str, Any]:
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        path = f"/0/private/{method}"
        body = urlencode({"nonce": nonce, **fields})
        headers = {
            "API-Key": key,
            "API-Sign": sign(path, body, nonce, secret),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        async with httpx.AsyncClient(base_url=self.url) as client:
            response = await client.post(path, content=body, headers=headers)
        self.checker.check(response)
        assert not self.checker.problems, self.checker.problems
        assert response.status_code == 200
        return response.json()


def _order(cid: str, **kw: Any) -> dict[str, Any]:
    return {
        "pair": "XBTUSD",
        "type": "buy",
        "ordertype": "limit",
        "price": "50000",
        "volume": "0.01",
        "cl_ord_id": cid,
        **kw,
    }


def _submit(cid: str, **kw: Any) -> SubmitOrder:
    values: dict[str, Any] = {
        "cl_ord_id": cid,
        "account": "a",
        "symbol": "BTC-USD",
        "side": OrderSide.BUY,
        "type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "qty": Decimal("0.01"),
        "price": Decimal("50000"),
    }
    values.update(kw)
    return SubmitOrder(**values)


async def test_authentication_and_nonces_are_checked(pair: KrakenPair) -> None:
    raw = Raw(pair)
    assert (await raw.post("Balance", {}))["error"] == []
    used = raw.nonce
    assert (await raw.post("Balance", {}, key="someone-else"))["error"] == ["EAPI:Invalid key"]
    wrong = base64.b64encode(b"not the secret").decode()
    assert (await raw.post("Balance", {}, secret=wrong))["error"] == ["EAPI:Invalid signature"]
    assert (await raw.post("Balance", {}, nonce=used))["error"] == ["EAPI:Invalid nonce"]  # reused
    assert (await raw.post("Balance", {}, nonce=5))["error"] == ["EAPI:Invalid nonce"]  # lower


async def test_order_answers_and_errors_are_krakens(pair: KrakenPair) -> None:
    raw = Raw(pair)
    added = await raw.post("AddOrder", _order("venue-a1"))
    assert added["error"] == [] and len(added["result"]["txid"]) == 1
    assert added["result"]["descr"]["order"] == "buy 0.01000000 XBTUSD @ limit 50000.0"
    txid = added["result"]["txid"][0]
    assert (await raw.post("AddOrder", _order("venue-a1")))["error"] == ["EOrder:Duplicate cl_ord_id"]
    assert (await raw.post("AddOrder", _order("x", pair="DOGEUSD")))["error"] == ["EQuery:Unknown asset pair"]
    assert (await raw.post("AddOrder", _order("x", price="50000.001")))["error"] == ["EOrder:Tick size check failed"]
    assert (await raw.post("AddOrder", _order("x", volume="0.00001")))["error"] == ["EGeneral:Invalid arguments:volume"]
    assert (await raw.post("AddOrder", _order("x", volume="900")))["error"] == ["EOrder:Insufficient funds"]
    assert (await raw.post("AddOrder", _order("nineteen-characters")))["error"] == [
        "EGeneral:Invalid arguments:cl_ord_id"
    ]
    both = await raw.post("AddOrder", _order("x", userref="7"))
    assert both["error"][0].startswith("EGeneral:Invalid arguments")
    late = await raw.post("AddOrder", _order("venue-late", deadline="2020-01-01T00:00:00Z"))
    assert late["error"] == ["EService:Deadline elapsed"]
    opened = await raw.post("OpenOrders", {"cl_ord_id": "venue-a1"})
    assert list(opened["result"]["open"]) == [txid]
    amended = await raw.post("AmendOrder", {"cl_ord_id": "venue-a1", "limit_price": "49000"})
    amends = await raw.post("OrderAmends", {"order_id": txid})
    assert [a["amend_type"] for a in amends["result"]["amends"]] == ["original", "user"]
    assert amends["result"]["amends"][1]["amend_id"] == amended["result"]["amend_id"]
    assert (await raw.post("CancelOrder", {"cl_ord_id": "venue-a1"}))["result"] == {"count": 1}
    assert (await raw.post("CancelOrder", {"cl_ord_id": "venue-a1"}))["error"] == ["EOrder:Unknown order"]
    closed = await raw.post("ClosedOrders", {"cl_ord_id": "venue-a1"})
    assert closed["result"]["closed"][txid]["status"] == "canceled"
    # Closed, the cl_ord_id is free again: Kraken deduplicates open orders only.
    assert (await raw.post("AddOrder", _order("venue-a1")))["error"] == []


async def test_an_order_executed_behind_a_502_is_found_and_never_sent_twice(pair: KrakenPair) -> None:
    broker = pair.broker
    pair.venue.faults.add("error_after", method="AddOrder", status=502)
    order = _submit("EX502AFTEREXEC0001", type=OrderType.MARKET, price=None)
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(order)
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED  # it executed
    again = await broker.submit_order(order)  # even a blind resend: looked up first, refused
    assert not again.accepted and "DUPLICATE" in (again.reason or "")
    assert pair.venue.requests["AddOrder"] == 1


async def test_a_refused_nonce_on_addorder_is_looked_up_then_sent_once(pair: KrakenPair) -> None:
    broker = pair.broker
    pair.venue.faults.add("error_before", method="AddOrder", errors=["EAPI:Invalid nonce"])
    order = _submit("EXNONCEREFUSED0001")
    ack = await broker.submit_order(order)
    assert ack.accepted, ack.reason
    assert pair.venue.requests["AddOrder"] == 2 and pair.venue.requests["OpenOrders"] >= 1
    opens = [o for o in await broker.open_orders() if o.cl_ord_id == order.cl_ord_id]
    assert len(opens) == 1


async def test_a_late_addorder_is_refused_by_its_deadline(pair: KrakenPair) -> None:
    late = pair.new_broker(deadline_seconds=2, request_timeout_seconds=1)
    pair.started.append(late)
    pair.venue.faults.add("hold_before", method="AddOrder", seconds=2.5)
    order = _submit("EXLATEDUPLICATE001")
    with pytest.raises(BrokerUnavailable):
        await late.submit_order(order)
    await asyncio.sleep(2)  # the held request reaches the engine after its deadline
    assert pair.venue.refusals.get("AddOrder EService:Deadline elapsed") == 1
    assert await late.get_order_status(order.cl_ord_id) is None  # never executed: safe to send


async def test_a_throttle_storm_delays_but_never_refuses(pair: KrakenPair) -> None:
    broker = pair.broker
    pair.venue.throttle(2, 4.0)
    orders = [_submit(f"EXSTORM{i:011d}") for i in range(8)]
    acks = await asyncio.gather(*(broker.submit_order(o) for o in orders))
    assert all(a.accepted for a in acks), [a.reason for a in acks]
    assert pair.venue.throttled > 0 and broker.rest.throttled > 0
    pair.venue.throttle(0, 1.0)
