"""Alpaca's order classes (bracket, OCO, OTO) at the local venue and through the adapter: one POST carries the legs,
the legs are ``held`` until the entry fills, a filled exit cancels the other at the venue, the adapter follows each
leg under our own client order id (never sending it), and every answer matches Alpaca's OpenAPI document."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

from brokers.alpaca.execution import AlpacaBroker
from core.domain import NativeLeg, NativeList, OrderSide, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.errors import BrokerUnavailable
from devstack.venues.alpaca.venue import AlpacaVenue
from tests.brokers.alpaca.kit import KEY, SECRET, AlpacaPair, eventually
from tests.brokers.contract import ReportCollector

D = Decimal


def _cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


def _order(
    side: OrderSide,
    type_: OrderType,
    qty: str,
    *,
    price: str | None = None,
    stop: str | None = None,
    cid: str | None = None,
    native: NativeList | None = None,
) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=cid or _cid(),
        account="desk",
        symbol="AAPL",
        side=side,
        type=type_,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        price=D(price) if price else None,
        stop_price=D(stop) if stop else None,
        native=native,
    )


def _bracket(entry_price: str, tp: str, sl: str, qty: str = "10") -> tuple[SubmitOrder, SubmitOrder, SubmitOrder]:
    tp_id, sl_id = _cid(), _cid()
    legs = (
        NativeLeg(role="take_profit", cl_ord_id=tp_id, side=OrderSide.SELL, type=OrderType.LIMIT, price=D(tp)),
        NativeLeg(role="stop_loss", cl_ord_id=sl_id, side=OrderSide.SELL, type=OrderType.STOP, stop_price=D(sl)),
    )
    entry = _order(
        OrderSide.BUY, OrderType.LIMIT, qty, price=entry_price, native=NativeList(order_class="bracket", legs=legs)
    )
    take = _order(
        OrderSide.SELL,
        OrderType.LIMIT,
        qty,
        price=tp,
        cid=tp_id,
        native=NativeList(order_class="bracket", held_by=entry.cl_ord_id, role="take_profit"),
    )
    stop = _order(
        OrderSide.SELL,
        OrderType.STOP,
        qty,
        stop=sl,
        cid=sl_id,
        native=NativeList(order_class="bracket", held_by=entry.cl_ord_id, role="stop_loss"),
    )
    return entry, take, stop


async def _raw(venue_url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=venue_url, headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    ) as c:
        return await c.request(method, path, **kw)


async def test_a_bracket_is_one_post_its_legs_held_then_working_and_a_filled_exit_cancels_the_other(
    alpaca_pair: AlpacaPair, broker: AlpacaBroker, market: AlpacaVenue, reports: ReportCollector
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    entry, take, stop = _bracket("185.00", "200.00", "180.00")
    posts = market.requests.get("POST /v2/orders", 0)
    ack = await broker.submit_order(entry)
    assert ack.accepted, ack
    head = await _raw(
        alpaca_pair.server.base_url,
        "GET",
        "/v2/orders:by_client_order_id",
        params={"client_order_id": entry.cl_ord_id, "nested": "true"},
    )
    data = head.json()
    assert data["order_class"] == "bracket" and data["status"] == "new"
    assert [(leg["type"], leg["status"], leg["side"]) for leg in data["legs"]] == [
        ("limit", "held", "sell"),
        ("stop", "held", "sell"),
    ]
    # A held leg is not working yet: an attached leg's submission finds it and follows it, under our id.
    leg_ack = await broker.submit_order(take)
    assert leg_ack.accepted and leg_ack.broker_order_id == data["legs"][0]["id"], leg_ack
    assert market.requests.get("POST /v2/orders", 0) == posts + 1  # the legs were never sent on their own
    status = await broker.get_order_status(take.cl_ord_id)
    assert status is not None and status.cl_ord_id == take.cl_ord_id and status.status.value == "ACCEPTED"

    await market.set_mid("AAPL", D("184.00"))  # the entry fills: the legs work
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(entry.cl_ord_id)))

    async def working() -> bool:
        r = await _raw(alpaca_pair.server.base_url, "GET", f"/v2/orders/{data['legs'][1]['id']}")
        return bool(r.json()["status"] == "new")

    await eventually(working)
    assert (await broker.submit_order(stop)).accepted
    await market.set_mid("AAPL", D("201.00"))  # the take-profit fills; the venue cancels the stop
    await reports.wait_for(
        lambda _: sum(r.last_qty or 0 for r in reports.of(take.cl_ord_id) if r.kind is ReportKind.FILL) == 10
    )
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(stop.cl_ord_id)))
    assert market.requests.get("DELETE /v2/orders/" + data["legs"][1]["id"], 0) == 0  # canceled by the venue
    listed = await _raw(alpaca_pair.server.base_url, "GET", "/v2/orders", params={"status": "all", "nested": "true"})
    mine = [o for o in listed.json() if o["client_order_id"] == entry.cl_ord_id]
    assert [leg["status"] for leg in mine[0]["legs"]] == ["filled", "canceled"]
    await market.set_mid("AAPL", D("190.00"))


async def test_an_entry_canceled_unfilled_cancels_its_held_legs(
    alpaca_pair: AlpacaPair, broker: AlpacaBroker, market: AlpacaVenue, reports: ReportCollector
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    entry, take, _ = _bracket("170.00", "200.00", "160.00")
    assert (await broker.submit_order(entry)).accepted
    assert (await broker.submit_order(take)).accepted
    from core.domain import CancelOrder

    cancel = await broker.cancel_order(
        CancelOrder(cl_ord_id=entry.cl_ord_id, symbol="AAPL", side=OrderSide.BUY, qty=D(10))
    )
    assert cancel.accepted
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(take.cl_ord_id)))


async def test_an_oco_works_both_orders_and_a_fill_of_one_cancels_the_other(
    alpaca_pair: AlpacaPair, broker: AlpacaBroker, market: AlpacaVenue, reports: ReportCollector
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    stop_id = _cid()
    leg = NativeLeg(
        role="stop_loss", cl_ord_id=stop_id, side=OrderSide.SELL, type=OrderType.STOP, stop_price=D("185.00")
    )
    limit = _order(
        OrderSide.SELL, OrderType.LIMIT, "5", price="195.00", native=NativeList(order_class="oco", legs=(leg,))
    )
    stop = _order(
        OrderSide.SELL,
        OrderType.STOP,
        "5",
        stop="185.00",
        cid=stop_id,
        native=NativeList(order_class="oco", held_by=limit.cl_ord_id, role="stop_loss"),
    )
    # The leg before its head: unknown (looked up again later), never a refusal and never a POST.
    posts = market.requests.get("POST /v2/orders", 0)
    try:
        await broker.submit_order(stop)
        raise AssertionError("a leg whose head is unknown was answered")
    except BrokerUnavailable:
        pass
    assert market.requests.get("POST /v2/orders", 0) == posts
    assert (await broker.submit_order(limit)).accepted
    ack = await broker.submit_order(stop)
    assert ack.accepted
    r = await _raw(alpaca_pair.server.base_url, "GET", f"/v2/orders/{ack.broker_order_id}")
    assert r.json()["status"] == "new" and r.json()["order_class"] == "oco"
    await market.set_mid("AAPL", D("184.00"))  # the stop triggers and fills; the venue cancels the limit
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(stop_id)))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(limit.cl_ord_id)))
    await market.set_mid("AAPL", D("190.00"))


async def test_the_venue_refuses_what_alpaca_refuses_in_an_order_class(
    alpaca_pair: AlpacaPair, market: AlpacaVenue
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    url = alpaca_pair.server.base_url
    base = {
        "symbol": "AAPL",
        "qty": "1",
        "side": "buy",
        "type": "limit",
        "limit_price": "185.00",
        "time_in_force": "gtc",
    }
    cases = [
        ({"order_class": "bracket", "take_profit": {"limit_price": "200.00"}}, "require take_profit and stop_loss"),
        (
            {"order_class": "bracket", "take_profit": {"limit_price": "200.00"}, "stop_loss": {"stop_price": "186.00"}},
            "stop_loss.stop_price must be <= base_price - 0.01",
        ),
        (
            {"order_class": "bracket", "take_profit": {"limit_price": "184.00"}, "stop_loss": {"stop_price": "180.00"}},
            "take_profit.limit_price must be >= base_price + 0.01",
        ),
        ({"order_class": "oto"}, "one of take_profit or stop_loss"),
        (
            {
                "order_class": "oco",
                "type": "market",
                "limit_price": None,
                "take_profit": {"limit_price": "200.00"},
                "stop_loss": {"stop_price": "180.00"},
            },
            "oco orders must be limit orders",
        ),
        ({"take_profit": {"limit_price": "200.00"}}, "for bracket, oco and oto orders"),
        (
            {
                "order_class": "bracket",
                "time_in_force": "ioc",
                "take_profit": {"limit_price": "200.00"},
                "stop_loss": {"stop_price": "180.00"},
            },
            "must be day or gtc",
        ),
    ]
    for extra, message in cases:
        body = {**base, **extra, "client_order_id": _cid()}
        r = await _raw(url, "POST", "/v2/orders", json={k: v for k, v in body.items() if v is not None})
        assert r.status_code == 422 and message in r.json()["message"], (extra, r.text)
        alpaca_pair.checker.check(r)
    # An OTO with a stop-loss only: one held leg.
    body = {
        **base,
        "client_order_id": _cid(),
        "order_class": "oto",
        "stop_loss": {"stop_price": "180.00", "limit_price": "179.50"},
    }
    r = await _raw(url, "POST", "/v2/orders", json=body)
    assert r.status_code == 200, r.text
    alpaca_pair.checker.check(r)
    assert [(leg["type"], leg["status"], leg["limit_price"]) for leg in r.json()["legs"]] == [
        ("stop_limit", "held", "179.5")
    ]
    listed = await _raw(url, "GET", "/v2/orders", params={"status": "open"})
    alpaca_pair.checker.check(listed)
    assert any(o["id"] == r.json()["legs"][0]["id"] and o["status"] == "held" for o in listed.json())
    assert not alpaca_pair.checker.problems, alpaca_pair.checker.problems


async def test_a_native_trailing_stop_follows_its_high_water_mark_then_fills(
    alpaca_pair: AlpacaPair, broker: AlpacaBroker, market: AlpacaVenue, reports: ReportCollector
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    order = SubmitOrder(
        cl_ord_id=_cid(),
        account="desk",
        symbol="AAPL",
        side=OrderSide.SELL,
        type=OrderType.TRAILING_STOP,
        time_in_force=TimeInForce.GTC,
        qty=D(3),
        trail_amount=D("1.00"),
    )
    ack = await broker.submit_order(order)
    assert ack.accepted, ack
    url = alpaca_pair.server.base_url

    async def shown() -> dict[str, Any]:
        r = await _raw(url, "GET", "/v2/orders:by_client_order_id", params={"client_order_id": order.cl_ord_id})
        alpaca_pair.checker.check(r)
        return dict(r.json())

    data = await shown()
    assert (data["type"], data["trail_price"], data["hwm"], data["stop_price"]) == ("trailing_stop", "1", "190", "189")
    await market.set_mid("AAPL", D("195.00"))  # the high-water mark rises, the stop with it
    data = await shown()
    assert (data["hwm"], data["stop_price"], data["status"]) == ("195", "194", "new")
    await market.set_mid("AAPL", D("194.50"))  # above the stop: nothing
    assert (await shown())["status"] == "new"
    await market.set_mid("AAPL", D("193.90"))  # through it: a market order fills at the bid
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)))
    [fill] = [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
    assert fill.last_qty == 3 and fill.last_price == D("193.89") and fill.broker_order_id == ack.broker_order_id
    data = await shown()
    assert data["status"] == "filled" and data["type"] == "trailing_stop" and data["id"] == ack.broker_order_id
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status.value == "FILLED"
    # An activation price is not Alpaca's: refused before anything is sent (the order workflow emulates such a stop).
    refused = await broker.submit_order(order.model_copy(update={"cl_ord_id": _cid(), "activation_price": D(200)}))
    assert not refused.accepted and "activation price" in (refused.reason or "")
    await market.set_mid("AAPL", D("190.00"))


async def test_a_leg_its_head_does_not_have_is_refused_without_sending(
    alpaca_pair: AlpacaPair, broker: AlpacaBroker, market: AlpacaVenue
) -> None:
    await market.set_mid("AAPL", D("190.00"))
    stop_id = _cid()
    leg = NativeLeg(role="stop_loss", cl_ord_id=stop_id, side=OrderSide.SELL, type=OrderType.STOP, stop_price=D(180))
    entry = _order(
        OrderSide.BUY, OrderType.LIMIT, "2", price="185.00", native=NativeList(order_class="oto", legs=(leg,))
    )
    assert (await broker.submit_order(entry)).accepted
    posts = market.requests.get("POST /v2/orders", 0)
    stray = _order(
        OrderSide.SELL,
        OrderType.LIMIT,
        "2",
        price="200.00",
        native=NativeList(order_class="oto", held_by=entry.cl_ord_id, role="take_profit"),
    )
    ack = await broker.submit_order(stray)
    assert not ack.accepted and (ack.reason or "").startswith("NO_LEG"), ack
    assert market.requests.get("POST /v2/orders", 0) == posts
    ok = await broker.submit_order(
        _order(
            OrderSide.SELL,
            OrderType.STOP,
            "2",
            stop="180.00",
            cid=stop_id,
            native=NativeList(order_class="oto", held_by=entry.cl_ord_id, role="stop_loss"),
        )
    )
    assert ok.accepted and ok.broker_order_id
