"""IB's order mapping, alone: the ib_async ``Order`` fields of each order type Exodus sends."""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.ib.parsing import order_fields
from core.domain import OrderSide, OrderType, TimeInForce
from tests.brokers.orders import submit_order

D = Decimal


_order = submit_order


def test_market_if_touched_is_mit_with_the_trigger_as_aux_price() -> None:
    fields = order_fields(_order(type=OrderType.MARKET_IF_TOUCHED, stop_price=D("180.5")), account="DU1")
    assert (fields["orderType"], fields["auxPrice"], "lmtPrice" in fields) == ("MIT", 180.5, False)
    assert fields["orderRef"] == "EX0123456789ABCDEF" and fields["tif"] == "DAY"


def test_limit_if_touched_is_lit_with_trigger_and_limit() -> None:
    fields = order_fields(
        _order(type=OrderType.LIMIT_IF_TOUCHED, stop_price=D("180.5"), price=D("180.25"), side=OrderSide.SELL),
        account="DU1",
    )
    assert (fields["orderType"], fields["auxPrice"], fields["lmtPrice"], fields["action"]) == (
        "LIT",
        180.5,
        180.25,
        "SELL",
    )


def test_a_touched_order_without_its_trigger_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="stop price"):
        order_fields(_order(type=OrderType.MARKET_IF_TOUCHED), account="DU1")


def test_at_the_open_is_tif_opg_and_at_the_close_is_a_day_moc_or_loc() -> None:
    opg = order_fields(_order(time_in_force=TimeInForce.OPG), account="DU1")
    assert (opg["orderType"], opg["tif"]) == ("MKT", "OPG")
    moc = order_fields(_order(time_in_force=TimeInForce.CLS), account="DU1")
    assert (moc["orderType"], moc["tif"]) == ("MOC", "DAY")
    loc = order_fields(_order(type=OrderType.LIMIT, price=D("180"), time_in_force=TimeInForce.CLS), account="DU1")
    assert (loc["orderType"], loc["tif"], loc["lmtPrice"]) == ("LOC", "DAY", 180.0)
    with pytest.raises(ValueError, match="market and limit"):
        order_fields(_order(type=OrderType.STOP, stop_price=D("180"), time_in_force=TimeInForce.CLS), account="DU1")
