"""Position and cash arithmetic for booking fills (pure functions; the store applies them in SQL transactions)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from core.domain import OrderSide

__all__ = ["PositionState", "apply_fill", "cash_delta"]


@dataclass(frozen=True, slots=True)
class PositionState:
    """A signed position with its average open price and realized P&L (in the quote currency)."""

    qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    realized_pnl: Decimal = Decimal(0)


def apply_fill(pos: PositionState, side: OrderSide, qty: Decimal, price: Decimal) -> PositionState:
    """Book a fill: extend the position at a new average, or reduce it and realize P&L (and flip if needed)."""
    signed = qty * side.sign
    if pos.qty == 0 or (pos.qty > 0) == (signed > 0):
        total = pos.qty + signed
        cost = abs(pos.qty) * (pos.avg_price or Decimal(0)) + qty * price
        return PositionState(total, cost / abs(total), pos.realized_pnl)
    # Reducing (possibly through zero).
    closing = min(abs(signed), abs(pos.qty))
    assert pos.avg_price is not None
    direction = 1 if pos.qty > 0 else -1
    realized = pos.realized_pnl + (price - pos.avg_price) * closing * direction
    total = pos.qty + signed
    if total == 0:
        return PositionState(Decimal(0), None, realized)
    if (total > 0) == (pos.qty > 0):
        return PositionState(total, pos.avg_price, realized)
    return PositionState(total, price, realized)  # flipped: the remainder opened at this fill's price


def cash_delta(side: OrderSide, qty: Decimal, price: Decimal, fee: Decimal) -> Decimal:
    """Change of the quote-currency cash balance: pay for buys, receive for sells, always pay fees."""
    return -side.sign * qty * price - fee
