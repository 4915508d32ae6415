"""Position and cash arithmetic."""

from decimal import Decimal as D

from core.domain import OrderSide
from core.ledger import PositionState, apply_fill, cash_delta

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def test_buys_average_the_price() -> None:
    pos = apply_fill(PositionState(), BUY, D(100), D(10))
    pos = apply_fill(pos, BUY, D(100), D(12))
    assert pos == PositionState(D(200), D(11), D(0))


def test_selling_part_realizes_pnl_and_keeps_the_average() -> None:
    pos = apply_fill(PositionState(D(200), D(11), D(0)), SELL, D(50), D(13))
    assert pos == PositionState(D(150), D(11), D(100))


def test_selling_through_zero_flips_at_the_fill_price() -> None:
    pos = apply_fill(PositionState(D(100), D(10), D(0)), SELL, D(150), D(9))
    assert pos == PositionState(D(-50), D(9), D(-100))


def test_closing_exactly_flattens() -> None:
    pos = apply_fill(PositionState(D(-30), D(20), D(5)), BUY, D(30), D(18))
    assert pos == PositionState(D(0), None, D(65))


def test_short_extends_at_average() -> None:
    pos = apply_fill(apply_fill(PositionState(), SELL, D(10), D(100)), SELL, D(30), D(104))
    assert pos == PositionState(D(-40), D(103), D(0))


def test_cash_moves_against_the_side_and_pays_fees() -> None:
    assert cash_delta(BUY, D(10), D("100.5"), D(1)) == D("-1006.0")
    assert cash_delta(SELL, D(10), D("100.5"), D(1)) == D("1004.0")
