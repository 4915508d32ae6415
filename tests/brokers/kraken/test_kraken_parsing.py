"""Kraken's wire mapping: AddOrder and AmendOrder fields, the pair table, order info and trades."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from brokers.kraken.config import KRAKEN_PAIRS, kraken_cl_ord_id, pair_of_kraken
from brokers.kraken.parsing import KrakenOrderView, KrakenTrade, amend_fields, order_fields
from brokers.kraken.store import KrakenOrder
from core.domain import OrderSide, OrderStatus, OrderType, ReplaceOrder, SubmitOrder, TimeInForce
from tests.brokers.orders import submit_order

_NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _order(**kw: object) -> SubmitOrder:
    """A GTC limit BUY of 1.25 BTC-USD at 37,500, but for what ``kw`` says."""
    terms: dict[str, object] = {"symbol": "BTC-USD", "type": OrderType.LIMIT, "time_in_force": TimeInForce.GTC}
    return submit_order(**{**terms, "qty": Decimal("1.25"), "price": Decimal("37500"), **kw})


def test_pair_table_maps_both_ways() -> None:
    assert KRAKEN_PAIRS["BTC-USD"].altname == "XBTUSD"
    assert pair_of_kraken("XXBTZUSD") is KRAKEN_PAIRS["BTC-USD"]
    assert pair_of_kraken("XBTUSD") is KRAKEN_PAIRS["BTC-USD"]
    assert pair_of_kraken("DOGEUSD") is None


def test_limit_order_fields() -> None:
    fields = order_fields(_order(), now=_NOW, deadline_seconds=10)
    assert fields == {
        "pair": "XBTUSD",
        "type": "buy",
        "ordertype": "limit",
        "volume": "1.25",
        "price": "37500",
        "cl_ord_id": "EX0123456789ABCDEF",
        "deadline": "2026-11-30T12:00:10.000000Z",
    }


def test_stop_limit_sends_the_trigger_as_price_and_the_limit_as_price2() -> None:
    order = _order(type=OrderType.STOP_LIMIT, stop_price=Decimal("40000"), price=Decimal("40100"), side=OrderSide.SELL)
    fields = order_fields(order, now=_NOW, deadline_seconds=10)
    assert (fields["ordertype"], fields["price"], fields["price2"], fields["type"]) == (
        "stop-loss-limit",
        "40000",
        "40100",
        "sell",
    )


def test_touched_orders_are_take_profit_with_the_trigger_as_price() -> None:
    mit = order_fields(
        _order(type=OrderType.MARKET_IF_TOUCHED, price=None, stop_price=Decimal("36000")), now=_NOW, deadline_seconds=10
    )
    assert (mit["ordertype"], mit["price"], "price2" in mit) == ("take-profit", "36000", False)
    lit = order_fields(
        _order(type=OrderType.LIMIT_IF_TOUCHED, stop_price=Decimal("36000"), price=Decimal("35900")),
        now=_NOW,
        deadline_seconds=10,
    )
    assert (lit["ordertype"], lit["price"], lit["price2"]) == ("take-profit-limit", "36000", "35900")


def test_ioc_and_gtd_and_day() -> None:
    assert order_fields(_order(time_in_force=TimeInForce.IOC), now=_NOW, deadline_seconds=5)["timeinforce"] == "IOC"
    gtd = order_fields(
        _order(time_in_force=TimeInForce.GTD, expire_at=datetime(2026, 12, 1, tzinfo=UTC)), now=_NOW, deadline_seconds=5
    )
    assert gtd["timeinforce"] == "GTD" and gtd["expiretm"] == str(int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()))
    assert "timeinforce" not in order_fields(_order(time_in_force=TimeInForce.DAY), now=_NOW, deadline_seconds=5)


@pytest.mark.parametrize(
    "kw",
    [
        {"time_in_force": TimeInForce.FOK},
        {"type": OrderType.PEGGED},
        {"symbol": "AAPL"},
        {"type": OrderType.MARKET, "price": None, "time_in_force": TimeInForce.GTD, "expire_at": _NOW},
    ],
)
def test_what_kraken_cannot_carry_is_refused_before_sending(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        order_fields(_order(**kw), now=_NOW, deadline_seconds=5)


def test_cl_ord_id_keeps_short_ids_and_derives_a_uuid_for_long_ones() -> None:
    assert kraken_cl_ord_id("EX0123456789ABCDEF") == "EX0123456789ABCDEF"
    long = kraken_cl_ord_id("an-order-id-longer-than-eighteen")
    assert len(long) == 32 and long == kraken_cl_ord_id("an-order-id-longer-than-eighteen")


def test_amend_keeps_the_orders_cl_ord_id_and_sends_the_new_total() -> None:
    request = ReplaceOrder(
        orig_cl_ord_id="EX0123456789ABCDEF",
        cl_ord_id="EX0123456789ABCDEF.1",
        symbol="BTC-USD",
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=Decimal("2"),
        price=Decimal("37000"),
    )
    fields = amend_fields(request, now=_NOW, deadline_seconds=5)
    assert fields["cl_ord_id"] == "EX0123456789ABCDEF" and fields["order_qty"] == "2"
    assert fields["limit_price"] == "37000" and "trigger_price" not in fields


def test_order_info_is_read() -> None:
    view = KrakenOrderView.of(
        "OQCLML-BW3P3-BUCMWZ",
        {
            "cl_ord_id": "EX0123456789ABCDEF",
            "status": "canceled",
            "opentm": 1688666559.8974,
            "closetm": 1688666600.1,
            "descr": {
                "pair": "XBTUSD",
                "type": "sell",
                "ordertype": "stop-loss-limit",
                "price": "30000.0",
                "price2": "29900.0",
            },
            "vol": "1.25000000",
            "vol_exec": "0.37500000",
            "price": "30010.0",
            "trades": ["THVRQM-33VKH-UCI7BS"],
        },
    )
    assert view.symbol == "BTC-USD" and view.side is OrderSide.SELL
    assert view.stop_price == Decimal("30000.0") and view.limit_price == Decimal("29900.0")
    assert view.final_status is OrderStatus.CANCELED and not view.working
    assert view.vol_exec == Decimal("0.375") and view.trades == ("THVRQM-33VKH-UCI7BS",)


def test_a_trade_of_krakens_example_is_read() -> None:
    trade = KrakenTrade.of(
        "THVRQM-33VKH-UCI7BS",
        {
            "ordertxid": "OQCLML-BW3P3-BUCMWZ",
            "pair": "XXBTZUSD",
            "time": 1688667796.8802,
            "type": "buy",
            "price": "30010.00000",
            "vol": "0.02000000",
            "fee": "0.00000",
        },
    )
    assert (trade.price, trade.vol, trade.side) == (Decimal("30010"), Decimal("0.02"), OrderSide.BUY)
    with pytest.raises(ValueError):
        KrakenTrade.of("T", {"ordertxid": "O", "price": "0", "vol": "1"})


def test_an_order_record_of_the_earlier_names_loads_and_is_written_under_them() -> None:
    # A body kraken_orders holds from before issue 19's names reached the adapter: ours was client_order_id and
    # Kraken's cl_ord_id. Each lands in its field, and this release writes the body back as it was.
    body = {
        "order_id": "EXKR1",
        "client_order_id": "EXKR1.1",
        "cl_ord_id": "EXKR1",
        "txid": "OABC",
        "account": "a",
        "symbol": "BTC-USD",
        "side": "BUY",
        "qty": "1",
        "status": "ACCEPTED",
        "amend_ids": [],
        "pending_amend": {"client_order_id": "EXKR1.2", "qty": "2", "price": None, "stop_price": None},
        "created_at": "2026-01-02T03:04:05Z",
        "updated_at": "2026-01-02T03:04:05Z",
    }
    record = KrakenOrder.model_validate(body)
    assert (record.cl_ord_id, record.kraken_cl_ord_id) == ("EXKR1.1", "EXKR1")
    assert record.pending_amend is not None and record.pending_amend.cl_ord_id == "EXKR1.2"
    assert record.model_dump(mode="json") == body
    # Under the new names too (the release after next writes them); a record without Kraken's id is refused.
    renamed = {k: v for k, v in body.items() if k not in ("client_order_id", "cl_ord_id", "pending_amend")}
    again = KrakenOrder.model_validate({**renamed, "cl_ord_id": "EXKR1.1", "kraken_cl_ord_id": "EXKR1"})
    assert (again.cl_ord_id, again.kraken_cl_ord_id) == ("EXKR1.1", "EXKR1")
    with pytest.raises(ValidationError):
        KrakenOrder.model_validate({**renamed, "cl_ord_id": "EXKR1.1"})
