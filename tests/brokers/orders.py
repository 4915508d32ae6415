"""A broker command for the mapping tests of the adapters (``test_<broker>_parsing.py``), which need no venue."""

from __future__ import annotations

from decimal import Decimal

from core.domain import OrderSide, OrderType, SubmitOrder, TimeInForce

__all__ = ["submit_order"]


def submit_order(**kw: object) -> SubmitOrder:
    """Order ``EX0123456789ABCDEF`` of account ``a``: a DAY market BUY of 10 AAPL, but for what ``kw`` says."""
    values: dict[str, object] = {
        "cl_ord_id": "EX0123456789ABCDEF",
        "account": "a",
        "symbol": "AAPL",
        "side": OrderSide.BUY,
        "type": OrderType.MARKET,
        "time_in_force": TimeInForce.DAY,
        "qty": Decimal(10),
    }
    values.update(kw)
    return SubmitOrder(**values)  # type: ignore[arg-type]
