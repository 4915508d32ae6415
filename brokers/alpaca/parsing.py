"""Alpaca's JSON to and from the domain: order bodies, Order objects, fill activities, quotes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from brokers.alpaca.config import ALPACA_STATUS, ALPACA_TIF, ALPACA_TYPE
from brokers.http import decimal_of
from brokers.http import decimal_text as text_of
from core.domain import OrderSide, OrderStatus, OrderType, ReplaceOrder, SubmitOrder

__all__ = [
    "AlpacaOrderView",
    "decimal_of",
    "leg_role",
    "order_class_body",
    "order_body",
    "replace_body",
    "rfc3339",
    "text_of",
    "time_of",
]


def rfc3339(at: datetime) -> str:
    """A time as Alpaca writes it (UTC, microseconds, ``Z``)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_of(value: Any) -> datetime | None:
    """An RFC 3339 time Alpaca sent (nanoseconds are cut to microseconds), or None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def order_body(order: SubmitOrder, symbol: str) -> dict[str, Any]:
    """``POST /v2/orders`` for a submission (``ValueError`` for what Alpaca cannot take)."""
    type_name = ALPACA_TYPE.get(order.type)
    tif = ALPACA_TIF.get(order.time_in_force)
    if type_name is None:
        raise ValueError(f"Alpaca has no {order.type.value} orders")
    if tif is None:
        raise ValueError(f"Alpaca has no time in force {order.time_in_force.value}")
    if len(order.cl_ord_id) > 48:
        raise ValueError("Alpaca client order ids have at most 48 characters")
    body: dict[str, Any] = {
        "symbol": symbol,
        "qty": text_of(order.qty),
        "side": "buy" if order.side is OrderSide.BUY else "sell",
        "type": type_name,
        "time_in_force": tif,
        "client_order_id": order.cl_ord_id,
    }
    if order.type.needs_price:
        if order.price is None:
            raise ValueError(f"a {order.type.value} order needs a limit price")
        body["limit_price"] = text_of(order.price)
    if order.type.needs_stop_price:
        if order.stop_price is None:
            raise ValueError(f"a {order.type.value} order needs a stop price")
        body["stop_price"] = text_of(order.stop_price)
    if order.type is OrderType.TRAILING_STOP:
        if order.activation_price is not None:
            raise ValueError("Alpaca's trailing stops have no activation price")
        if order.trail_amount is not None:
            body["trail_price"] = text_of(order.trail_amount)
        elif order.trail_percent is not None:
            body["trail_percent"] = text_of(order.trail_percent)
        else:
            raise ValueError("a trailing stop needs a trail amount or percent")
    native = order.native
    if native is not None and native.held_by is None:
        body.update(order_class_body(order))
    return body


def order_class_body(order: SubmitOrder) -> dict[str, Any]:
    """The order class part of a list's head order: ``order_class`` with its ``take_profit`` and ``stop_loss``.

    A bracket carries both exits, an OTO one, an OCO its stop (the head is the OCO's limit, repeated as the
    ``take_profit``). ``ValueError`` for a leg Alpaca cannot attach.
    """
    native = order.native
    assert native is not None
    body: dict[str, Any] = {"order_class": native.order_class}
    if native.order_class == "oco":
        if order.price is None:
            raise ValueError("an OCO's head is a limit order")
        body["take_profit"] = {"limit_price": text_of(order.price)}
    for leg in native.legs:
        if leg.role == "take_profit":
            if leg.price is None:
                raise ValueError("a take-profit leg needs a limit price")
            body["take_profit"] = {"limit_price": text_of(leg.price)}
        else:
            if leg.stop_price is None:
                raise ValueError("a stop-loss leg needs a stop price")
            stop: dict[str, str] = {"stop_price": text_of(leg.stop_price)}
            if leg.price is not None:
                stop["limit_price"] = text_of(leg.price)
            body["stop_loss"] = stop
    return body


def leg_role(data: dict[str, Any]) -> str | None:
    """Which leg of an order class an Order object is: ``take_profit`` (limit), ``stop_loss`` (stop, stop_limit)."""
    kind = data.get("type") or data.get("order_type")
    if kind == "limit":
        return "take_profit"
    if kind in ("stop", "stop_limit"):
        return "stop_loss"
    return None


def replace_body(request: ReplaceOrder, remaining: Decimal) -> dict[str, Any]:
    """``PATCH /v2/orders/{id}``: the replacement works ``remaining`` (the new total less what has filled)."""
    body: dict[str, Any] = {"qty": text_of(remaining), "client_order_id": request.cl_ord_id}
    if request.type.needs_price and request.price is not None:
        body["limit_price"] = text_of(request.price)
    if request.type.needs_stop_price and request.stop_price is not None:
        body["stop_price"] = text_of(request.stop_price)
    return body


@dataclass(frozen=True)
class AlpacaOrderView:
    """The fields of Alpaca's Order object the adapter reads."""

    id: str
    cl_ord_id: str
    symbol: str
    side: OrderSide
    status: str
    qty: Decimal
    filled_qty: Decimal
    filled_avg_price: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    replaced_by: str | None
    replaces: str | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> AlpacaOrderView:
        """Read an Order object (``ValueError`` when it lacks what the adapter needs)."""
        try:
            return cls(
                id=str(data["id"]),
                cl_ord_id=str(data.get("client_order_id") or ""),
                symbol=str(data.get("symbol") or ""),
                side=OrderSide.SELL if data.get("side") == "sell" else OrderSide.BUY,
                status=str(data["status"]),
                qty=decimal_of(data.get("qty")) or Decimal(0),
                filled_qty=decimal_of(data.get("filled_qty")) or Decimal(0),
                filled_avg_price=decimal_of(data.get("filled_avg_price")),
                limit_price=decimal_of(data.get("limit_price")),
                stop_price=decimal_of(data.get("stop_price")),
                replaced_by=data.get("replaced_by") or None,
                replaces=data.get("replaces") or None,
                created_at=time_of(data.get("created_at")),
                updated_at=time_of(data.get("updated_at")),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an Alpaca order: missing {e}") from e

    @property
    def final_status(self) -> OrderStatus | None:
        """The Exodus status when this order is closed for good (filled, canceled, expired, rejected)."""
        return ALPACA_STATUS.get(self.status)

    @property
    def working(self) -> bool:
        """Whether it still works at Alpaca (a replaced order does not; its replacement does)."""
        return self.status != "replaced" and self.final_status is None
