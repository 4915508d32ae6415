"""The OANDA wire mapping, alone: order bodies, refusals before sending, numbers, times and symbols."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from brokers.oanda.parsing import (
    OandaOrderView,
    instrument_of,
    order_body,
    replace_body,
    symbol_of,
    time_of,
)
from core.domain import OrderSide, OrderType, PegType, ReplaceOrder, SubmitOrder, TimeInForce
from tests.brokers.orders import submit_order

D = Decimal


def _order(**kw: object) -> SubmitOrder:
    """A DAY limit SELL of 25,000 EURUSD at 1.08500, but for what ``kw`` says."""
    terms: dict[str, object] = {"symbol": "EURUSD", "side": OrderSide.SELL, "type": OrderType.LIMIT}
    return submit_order(**{**terms, "qty": D(25000), "price": D("1.08500"), **kw})


def test_a_limit_order_is_signed_units_gfd_and_our_client_id() -> None:
    body = order_body(_order(), "EUR_USD")["order"]
    assert body == {
        "type": "LIMIT",
        "instrument": "EUR_USD",
        "units": "-25000",
        "timeInForce": "GFD",
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": "EX0123456789ABCDEF"},
        "price": "1.085",
    }


def test_a_market_order_is_fok_unless_ioc() -> None:
    for tif, wire in ((TimeInForce.DAY, "FOK"), (TimeInForce.GTC, "FOK"), (TimeInForce.IOC, "IOC")):
        body = order_body(_order(type=OrderType.MARKET, price=None, side=OrderSide.BUY, time_in_force=tif), "EUR_USD")
        assert body["order"]["timeInForce"] == wire and body["order"]["units"] == "25000"
        assert "price" not in body["order"]


def test_a_stop_order_carries_its_stop_as_price_and_gtd_its_time() -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    body = order_body(
        _order(type=OrderType.STOP, price=None, stop_price=D("1.09"), time_in_force=TimeInForce.GTD, expire_at=at),
        "EUR_USD",
    )["order"]
    assert body["type"] == "STOP" and body["price"] == "1.09" and body["timeInForce"] == "GTD"
    assert body["gtdTime"] == "2030-01-02T03:04:05.600000000Z"


def test_a_market_if_touched_order_carries_its_trigger_as_price() -> None:
    body = order_body(
        _order(type=OrderType.MARKET_IF_TOUCHED, price=None, stop_price=D("1.08"), time_in_force=TimeInForce.GTC),
        "EUR_USD",
    )["order"]
    assert body == {
        "type": "MARKET_IF_TOUCHED",
        "instrument": "EUR_USD",
        "units": "-25000",
        "timeInForce": "GTC",
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": "EX0123456789ABCDEF"},
        "price": "1.08",
    }
    day = order_body(_order(type=OrderType.MARKET_IF_TOUCHED, price=None, stop_price=D("1.08")), "EUR_USD")
    assert day["order"]["timeInForce"] == "GFD"


def test_a_market_if_touched_order_is_never_ioc_or_fok_at_oanda() -> None:
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        with pytest.raises(ValueError, match="MARKET_IF_TOUCHED"):
            order_body(
                _order(type=OrderType.MARKET_IF_TOUCHED, price=None, stop_price=D("1.08"), time_in_force=tif),
                "EUR_USD",
            )


def test_what_oanda_cannot_carry_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="LIMIT_IF_TOUCHED"):
        order_body(_order(type=OrderType.LIMIT_IF_TOUCHED, stop_price=D("1.09")), "EUR_USD")
    with pytest.raises(ValueError, match="STOP_LIMIT"):
        order_body(_order(type=OrderType.STOP_LIMIT, stop_price=D("1.09")), "EUR_USD")
    with pytest.raises(ValueError, match="pegged"):
        order_body(_order(type=OrderType.PEGGED, price=None, peg_type=PegType.MIDPOINT), "EUR_USD")


def test_a_replacement_works_the_units_left_under_the_new_client_id() -> None:
    request = ReplaceOrder(
        orig_cl_ord_id="EX0123456789ABCDEF",
        cl_ord_id="EX0123456789ABCDEF.1",
        symbol="EURUSD",
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(30000),
        price=D("1.08"),
    )
    body = replace_body(request, "EUR_USD", D(20000))["order"]
    assert body["units"] == "20000" and body["clientExtensions"] == {"id": "EX0123456789ABCDEF.1"}


def test_times_numbers_and_symbols() -> None:
    assert time_of("2016-06-22T18:41:29.285982286Z") == datetime(2016, 6, 22, 18, 41, 29, 285982, tzinfo=UTC)
    assert time_of("1466620889.285982") == datetime(2016, 6, 22, 18, 41, 29, 285982, tzinfo=UTC)
    assert time_of("nonsense") is None
    assert instrument_of("EURUSD") == "EUR_USD" and symbol_of("EUR_USD") == "EURUSD"
    assert instrument_of("XAUUSD", {"XAUUSD": "XAU_USD"}) == "XAU_USD"
    view = OandaOrderView.of(
        {
            "id": "7",
            "type": "LIMIT",
            "state": "PENDING",
            "units": "-1000",
            "price": "1.1",
            "clientExtensions": {"id": "EXA"},
        }
    )
    assert view.side is OrderSide.SELL and view.qty == 1000 and view.working and view.cl_ord_id == "EXA"
    with pytest.raises(ValueError):
        OandaOrderView.of({"id": "7"})
