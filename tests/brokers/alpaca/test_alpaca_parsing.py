"""Alpaca's order mapping, alone: the times in force at the open and at the close, and what Alpaca cannot take."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.alpaca.parsing import order_body
from core.domain import OrderType, TimeInForce
from tests.brokers.orders import submit_order

D = Decimal


_order = submit_order


def test_at_the_open_and_at_the_close_are_opg_and_cls() -> None:
    assert order_body(_order(time_in_force=TimeInForce.OPG), "AAPL")["time_in_force"] == "opg"
    body = order_body(_order(type=OrderType.LIMIT, price=D("180"), time_in_force=TimeInForce.CLS), "AAPL")
    assert (body["time_in_force"], body["type"], body["limit_price"]) == ("cls", "limit", "180")


def test_touched_orders_are_refused_before_sending() -> None:
    with pytest.raises(ValueError):
        order_body(_order(type=OrderType.MARKET_IF_TOUCHED, stop_price=D("180")), "AAPL")
