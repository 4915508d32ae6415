"""The IB wire mapping: domain requests to ib_async's contract and order fields, IB's answers to domain terms.

Pure functions, no I/O and no ib_async import (the execution side builds ``Contract``/``Order`` from these dicts).
A request IB cannot carry is refused with ``ValueError`` before anything is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.ib.config import IB_ON_CLOSE_TYPE, IB_TIF, IB_TYPE
from core.domain import InstrumentClass, OrderSide, OrderStatus, ReplaceOrder, SubmitOrder
from core.instruments import InstrumentCatalog
from core.settings import IBSettings

__all__ = [
    "contract_fields",
    "decimal_of",
    "domain_symbol",
    "good_till",
    "order_fields",
    "status_of",
]

#: IB's "no value" double.
_UNSET = 1.7976931348623157e308


def contract_fields(symbol: str, settings: IBSettings, instruments: InstrumentCatalog | None) -> dict[str, Any]:
    """The IB contract an Exodus symbol names: a configured one, else by instrument class (stocks on SMART)."""
    configured = settings.contracts.get(symbol)
    if configured:
        return dict(configured)
    inst = instruments.get(symbol) if instruments is not None else None
    if inst is None or inst.instrument_class is InstrumentClass.EQUITY:
        return {"symbol": symbol, "secType": "STK", "exchange": settings.exchange, "currency": settings.currency}
    if inst.instrument_class is InstrumentClass.FX:
        return {
            "symbol": inst.base_currency,
            "secType": "CASH",
            "exchange": "IDEALPRO",
            "currency": inst.quote_currency,
        }
    return {"symbol": inst.base_currency, "secType": "CRYPTO", "exchange": "PAXOS", "currency": inst.quote_currency}


def domain_symbol(symbol: str, sec_type: str, currency: str, settings: IBSettings) -> str:
    """The Exodus symbol of an IB contract (inverse of ``contract_fields``)."""
    for exodus, c in settings.contracts.items():
        if (
            c.get("symbol") == symbol
            and c.get("secType", "STK") == sec_type
            and c.get("currency", currency) == currency
        ):
            return exodus
    if sec_type == "CASH":
        return f"{symbol}{currency}"
    if sec_type == "CRYPTO":
        return f"{symbol}-{currency}"
    return symbol


def good_till(at: datetime) -> str:
    """``goodTillDate`` for an expiry: ``YYYYMMDD HH:MM:SS UTC``."""
    return at.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def order_fields(order: SubmitOrder | ReplaceOrder, *, account: str) -> dict[str, Any]:
    """ib_async ``Order`` fields for a new order or a modification (``orderRef`` = our client order id)."""
    otype = IB_TYPE.get(order.type)
    if otype is None:
        raise ValueError(f"IB orders of type {order.type.value} are not supported by the adapter")
    tif = IB_TIF.get(order.time_in_force)
    if tif is None:
        raise ValueError(f"IB has no time in force {order.time_in_force.value}")
    if order.time_in_force.is_auction and order.type not in IB_ON_CLOSE_TYPE:
        raise ValueError(f"IB takes {order.time_in_force.value} for market and limit orders only")
    if order.time_in_force.value == "CLS":
        otype = IB_ON_CLOSE_TYPE[order.type]
    fields: dict[str, Any] = {
        "action": "BUY" if order.side is OrderSide.BUY else "SELL",
        "totalQuantity": float(order.qty),
        "orderType": otype,
        "tif": tif,
        "orderRef": order.cl_ord_id,
        "account": account,
        "transmit": True,
    }
    if order.type.needs_price:
        if order.price is None:
            raise ValueError(f"a {order.type.value} order needs a limit price")
        fields["lmtPrice"] = float(order.price)
    if order.type.needs_stop_price:
        if order.stop_price is None:
            raise ValueError(f"a {order.type.value} order needs a stop price")
        fields["auxPrice"] = float(order.stop_price)
    if order.time_in_force.value == "GTD":
        expire_at = getattr(order, "expire_at", None)
        if expire_at is None and isinstance(order, SubmitOrder):
            raise ValueError("a GTD order needs an expiry (goodTillDate)")
        if expire_at is not None:
            fields["goodTillDate"] = good_till(expire_at)
    return fields


def decimal_of(value: float | int | str | None) -> Decimal | None:
    """A wire number as a Decimal (None for IB's unset value, empty or 0 prices)."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        if value >= _UNSET or value != value:
            return None
        return Decimal(repr(value)).normalize()
    return Decimal(str(value)).normalize()


def status_of(ib_status: str, *, rejected: bool, filled: bool) -> OrderStatus | None:
    """The domain status of an IB status (None: still working).

    IB reports a refused order as ``Cancelled`` (or ``Inactive``): only its error event (201 and kin) or a completed
    order's ``completedStatus`` ("Rejected...") says it was a reject; ``rejected`` carries that.
    """
    if ib_status == "Filled":
        return OrderStatus.FILLED
    if ib_status in ("Cancelled", "ApiCancelled"):
        return OrderStatus.REJECTED if rejected and not filled else OrderStatus.CANCELED
    if ib_status == "Inactive":
        return OrderStatus.REJECTED if not filled else OrderStatus.CANCELED
    return None
