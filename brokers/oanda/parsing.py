"""The OANDA wire mapping: domain requests to v20 order requests, v20 orders and transactions to plain views.

Pure functions, no I/O (``tests/brokers/oanda/test_oanda_parsing.py``). What OANDA cannot carry is refused with
``ValueError`` before anything is sent. OANDA numbers are decimal strings, the units' sign is the side (there is no
side field), times are RFC 3339 with up to nine fractional digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.http import decimal_of, decimal_text
from brokers.oanda.config import OANDA_TIF, OANDA_TOUCHED_TIF, OANDA_TYPE
from core.domain import OrderSide, OrderType, ReplaceOrder, SubmitOrder, TimeInForce

__all__ = [
    "OandaOrderView",
    "decimal_of",
    "decimal_text",
    "instrument_of",
    "oanda_time",
    "order_body",
    "replace_body",
    "side_of",
    "time_of",
    "units_text",
]


def time_of(value: Any) -> datetime | None:
    """An OANDA RFC 3339 time (nanoseconds allowed) or a UNIX time string, in UTC; None when unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=UTC)
        text = text.replace("Z", "+00:00")
        if "." in text:
            head, _, rest = text.partition(".")
            digits = "".join(c for c in rest if c.isdigit())
            zone = rest[len(digits) :]
            text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def oanda_time(at: datetime) -> str:
    """A time as OANDA writes it: RFC 3339 in UTC with nine fractional digits."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def instrument_of(symbol: str, symbol_map: dict[str, str] | None = None) -> str:
    """The OANDA instrument of an Exodus symbol: the map's, else ``EURUSD -> EUR_USD`` (six letters)."""
    if symbol_map and symbol in symbol_map:
        return symbol_map[symbol]
    if len(symbol) == 6 and symbol.isalpha():
        return f"{symbol[:3]}_{symbol[3:]}".upper()
    return symbol


def symbol_of(instrument: str, symbol_map: dict[str, str] | None = None) -> str:
    """The Exodus symbol of an OANDA instrument (the inverse of ``instrument_of``)."""
    for symbol, name in (symbol_map or {}).items():
        if name == instrument:
            return symbol
    return instrument.replace("_", "")


def units_text(qty: Decimal, side: OrderSide) -> str:
    """OANDA's signed units: positive buys, negative sells."""
    if qty <= 0:
        raise ValueError(f"the quantity must be positive, not {qty}")
    return decimal_text(qty if side is OrderSide.BUY else -qty)


def side_of(units: Decimal) -> OrderSide:
    """The side signed units stand for."""
    return OrderSide.BUY if units > 0 else OrderSide.SELL


def _tif(order_type: OrderType, tif: TimeInForce) -> str:
    if order_type is OrderType.MARKET:
        # OANDA market orders are FOK (the default) or IOC; they never rest.
        return "IOC" if tif is TimeInForce.IOC else "FOK"
    return OANDA_TIF[tif]


def _terms(
    *,
    order_type: OrderType,
    tif: TimeInForce,
    instrument: str,
    units: str,
    price: Decimal | None,
    stop_price: Decimal | None,
    expire_at: datetime | None,
    cl_ord_id: str,
) -> dict[str, Any]:
    name = OANDA_TYPE.get(order_type)
    if name is None:
        raise ValueError(f"OANDA has no {order_type.value} orders (MARKET, LIMIT, STOP, MARKET_IF_TOUCHED)")
    if tif not in OANDA_TIF:
        raise ValueError(f"OANDA has no time in force {tif.value}")
    if order_type is OrderType.MARKET_IF_TOUCHED and tif not in OANDA_TOUCHED_TIF:
        raise ValueError(f"OANDA's MARKET_IF_TOUCHED orders are GTC, DAY (GFD) or GTD, not {tif.value}")
    body: dict[str, Any] = {
        "type": name,
        "instrument": instrument,
        "units": units,
        "timeInForce": _tif(order_type, tif),
        "positionFill": "DEFAULT",
        "clientExtensions": {"id": cl_ord_id},
    }
    if order_type is OrderType.LIMIT:
        if price is None:
            raise ValueError("a LIMIT order needs a price")
        body["price"] = decimal_text(price)
    elif order_type in (OrderType.STOP, OrderType.MARKET_IF_TOUCHED):
        if stop_price is None:
            raise ValueError(f"a {name} order needs a stop price")
        # OANDA's STOP order: ``price`` is the threshold; no ``priceBound`` (it would cancel, not rest).
        body["price"] = decimal_text(stop_price)
    if body["timeInForce"] == "GTD":
        if expire_at is None:
            raise ValueError("a GTD order needs an expiry time")
        body["gtdTime"] = oanda_time(expire_at)
    return body


def order_body(order: SubmitOrder, instrument: str) -> dict[str, Any]:
    """``POST /v3/accounts/{id}/orders``'s body for ``order`` (``clientExtensions.id`` is our client order id)."""
    if order.peg_type is not None:
        raise ValueError("OANDA has no pegged orders")
    return {
        "order": _terms(
            order_type=order.type,
            tif=order.time_in_force,
            instrument=instrument,
            units=units_text(order.qty, order.side),
            price=order.price,
            stop_price=order.stop_price,
            expire_at=order.expire_at,
            cl_ord_id=order.cl_ord_id,
        )
    }


def replace_body(
    request: ReplaceOrder, instrument: str, units: Decimal, *, expire_at: datetime | None = None
) -> dict[str, Any]:
    """``PUT …/orders/{specifier}``'s body: the replacement working ``units`` (the rest of the total)."""
    return {
        "order": _terms(
            order_type=request.type,
            tif=request.time_in_force,
            instrument=instrument,
            units=units_text(units, request.side),
            price=request.price,
            stop_price=request.stop_price,
            expire_at=expire_at,
            cl_ord_id=request.cl_ord_id,
        )
    }


@dataclass(frozen=True)
class OandaOrderView:
    """What the adapter reads of an OANDA Order object."""

    id: str
    type: str
    state: str
    cl_ord_id: str | None
    instrument: str
    units: Decimal
    price: Decimal | None
    filling_transaction_id: str | None
    cancelling_transaction_id: str | None
    replaces: str | None
    replaced_by: str | None
    created_at: datetime | None
    gtd_time: datetime | None = None

    @classmethod
    def of(cls, data: dict[str, Any]) -> OandaOrderView:
        """Read an Order object (``ValueError`` when it is not one)."""
        oid, state = data.get("id"), data.get("state")
        units = decimal_of(data.get("units"))
        if not isinstance(oid, str) or not isinstance(state, str) or units is None:
            raise ValueError(f"not an OANDA order: {str(data)[:200]}")
        ext = data.get("clientExtensions")
        cid = ext.get("id") if isinstance(ext, dict) else None
        return cls(
            id=oid,
            type=str(data.get("type") or ""),
            state=state,
            cl_ord_id=cid if isinstance(cid, str) else None,
            instrument=str(data.get("instrument") or ""),
            units=units,
            price=decimal_of(data.get("price")),
            filling_transaction_id=data.get("fillingTransactionID"),
            cancelling_transaction_id=data.get("cancellingTransactionID"),
            replaces=data.get("replacesOrderID"),
            replaced_by=data.get("replacedByOrderID"),
            created_at=time_of(data.get("createTime")),
            gtd_time=time_of(data.get("gtdTime")),
        )

    @property
    def side(self) -> OrderSide:
        """Buy or sell, from the units' sign."""
        return side_of(self.units)

    @property
    def qty(self) -> Decimal:
        """The order's own quantity (unsigned)."""
        return abs(self.units)

    @property
    def working(self) -> bool:
        """Whether OANDA still works the order."""
        return self.state in ("PENDING", "TRIGGERED")
