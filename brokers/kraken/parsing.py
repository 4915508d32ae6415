"""Kraken's wire format to and from the domain: AddOrder and AmendOrder fields, order info, trades, tickers.

Pure functions, no I/O. What Kraken cannot carry is refused with ``ValueError`` before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from brokers.http import decimal_of
from brokers.http import decimal_text as text_of
from brokers.kraken.config import KRAKEN_PAIRS, KRAKEN_TIF, KRAKEN_TYPE, kraken_cl_ord_id, pair_of_kraken
from core.domain import OrderSide, OrderStatus, OrderType, ReplaceOrder, SubmitOrder, TimeInForce, base_order_id

__all__ = [
    "KrakenOrderView",
    "KrakenTrade",
    "amend_fields",
    "decimal_of",
    "deadline",
    "order_fields",
    "text_of",
    "time_of",
]


def time_of(value: Any) -> datetime | None:
    """A Unix time in seconds (Kraken's ``opentm``, ``closetm``, a trade's ``time``), or None for 0 or nothing."""
    number = decimal_of(value)
    if number is None or number <= 0:
        return None
    return datetime.fromtimestamp(float(number), tz=UTC)


def deadline(now: datetime, seconds: float) -> str:
    """AddOrder's and AmendOrder's ``deadline``: RFC 3339, ``seconds`` after ``now``."""
    return (now + timedelta(seconds=seconds)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_fields(order: SubmitOrder, *, now: datetime, deadline_seconds: float) -> dict[str, Any]:
    """AddOrder's fields for a submission (``ValueError`` for what Kraken cannot take)."""
    pair = KRAKEN_PAIRS.get(order.symbol)
    if pair is None:
        raise ValueError(f"Kraken pair table has no {order.symbol}")
    ordertype = KRAKEN_TYPE.get(order.type)
    if ordertype is None:
        raise ValueError(f"Kraken has no {order.type.value} orders")
    tif = KRAKEN_TIF.get(order.time_in_force)
    if tif is None:
        raise ValueError(f"Kraken has no time in force {order.time_in_force.value}")
    if order.type is OrderType.MARKET and order.time_in_force is TimeInForce.GTD:
        raise ValueError("a market order cannot be GTD")
    fields: dict[str, Any] = {
        "pair": pair.altname,
        "type": "buy" if order.side is OrderSide.BUY else "sell",
        "ordertype": ordertype,
        "volume": text_of(order.qty),
        "cl_ord_id": kraken_cl_ord_id(base_order_id(order.cl_ord_id)),
        "deadline": deadline(now, deadline_seconds),
    }
    if tif != "GTC":
        fields["timeinforce"] = tif
    if order.time_in_force is TimeInForce.GTD:
        if order.expire_at is None:
            raise ValueError("a GTD order needs an expiry")
        fields["expiretm"] = str(int(order.expire_at.timestamp()))
    if order.type is OrderType.LIMIT:
        if order.price is None:
            raise ValueError("a limit order needs a limit price")
        fields["price"] = text_of(order.price)
    elif order.type in (OrderType.STOP, OrderType.MARKET_IF_TOUCHED):
        if order.stop_price is None:
            raise ValueError(f"a {ordertype} order needs a trigger price (stopPrice)")
        fields["price"] = text_of(order.stop_price)
    elif order.type in (OrderType.STOP_LIMIT, OrderType.LIMIT_IF_TOUCHED):
        if order.stop_price is None or order.price is None:
            raise ValueError(f"a {ordertype} order needs a trigger price (stopPrice) and a limit price")
        fields["price"] = text_of(order.stop_price)
        fields["price2"] = text_of(order.price)
    return fields


def amend_fields(request: ReplaceOrder, *, now: datetime, deadline_seconds: float) -> dict[str, Any]:
    """AmendOrder's fields: the order keeps its ``cl_ord_id``; ``order_qty`` is the new total quantity."""
    fields: dict[str, Any] = {
        "cl_ord_id": kraken_cl_ord_id(base_order_id(request.orig_cl_ord_id)),
        "order_qty": text_of(request.qty),
        "deadline": deadline(now, deadline_seconds),
    }
    if request.type.needs_price and request.price is not None:
        fields["limit_price"] = text_of(request.price)
    if request.type.needs_stop_price and request.stop_price is not None:
        fields["trigger_price"] = text_of(request.stop_price)
    return fields


@dataclass(frozen=True)
class KrakenOrderView:
    """The fields of Kraken's order info (OpenOrders, ClosedOrders, QueryOrders) the adapter reads."""

    txid: str
    #: Kraken's ``cl_ord_id`` of the order (ours is derived from the order id: ``kraken_cl_ord_id``).
    kraken_cl_ord_id: str | None
    userref: int | None
    status: str
    pair: str
    side: OrderSide
    ordertype: str
    vol: Decimal
    vol_exec: Decimal
    avg_price: Decimal | None
    price: Decimal | None
    price2: Decimal | None
    reason: str | None
    opentm: datetime | None
    closetm: datetime | None
    misc: str
    trades: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, txid: str, data: dict[str, Any]) -> KrakenOrderView:
        """Read one order info (``ValueError`` when it lacks what the adapter needs)."""
        try:
            descr = data.get("descr") or {}
            userref = data.get("userref")
            return cls(
                txid=txid,
                kraken_cl_ord_id=data.get("cl_ord_id") or None,
                userref=int(userref) if userref not in (None, "") else None,
                status=str(data["status"]),
                pair=str(descr.get("pair") or ""),
                side=OrderSide.SELL if descr.get("type") == "sell" else OrderSide.BUY,
                ordertype=str(descr.get("ordertype") or ""),
                vol=decimal_of(data.get("vol")) or Decimal(0),
                vol_exec=decimal_of(data.get("vol_exec")) or Decimal(0),
                avg_price=decimal_of(data.get("price")) or None,
                price=decimal_of(descr.get("price")) or None,
                price2=decimal_of(descr.get("price2")) or None,
                reason=data.get("reason") or None,
                opentm=time_of(data.get("opentm")),
                closetm=time_of(data.get("closetm")),
                misc=str(data.get("misc") or ""),
                trades=tuple(str(t) for t in data.get("trades") or ()),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a Kraken order: {e!r}") from e

    @property
    def symbol(self) -> str:
        """The Exodus symbol of its pair (Kraken's name when the table lacks it)."""
        pair = pair_of_kraken(self.pair)
        return pair.symbol if pair else self.pair

    @property
    def limit_price(self) -> Decimal | None:
        """The limit price: ``price`` of a limit order, ``price2`` of a stop-loss-limit."""
        if self.ordertype == "limit":
            return self.price
        if self.ordertype.endswith("-limit"):
            return self.price2
        return None

    @property
    def stop_price(self) -> Decimal | None:
        """The trigger price of a stop-loss or stop-loss-limit (``price``)."""
        return self.price if self.ordertype.startswith(("stop-loss", "take-profit", "trailing-stop")) else None

    @property
    def working(self) -> bool:
        """Whether it still works at Kraken."""
        return self.status in ("pending", "open")

    @property
    def final_status(self) -> OrderStatus | None:
        """The Exodus status once the order is done; None while it works."""
        if self.status == "closed":
            return OrderStatus.FILLED
        if self.status == "canceled":
            return OrderStatus.CANCELED
        if self.status == "expired":
            return OrderStatus.EXPIRED
        return None


@dataclass(frozen=True)
class KrakenTrade:
    """One trade (fill) of TradesHistory or QueryTrades, keyed by its trade txid."""

    txid: str
    ordertxid: str
    pair: str
    side: OrderSide
    price: Decimal
    vol: Decimal
    fee: Decimal | None
    time: datetime | None

    @classmethod
    def of(cls, txid: str, data: dict[str, Any]) -> KrakenTrade:
        """Read one trade (``ValueError`` when it lacks a price or a volume)."""
        price, vol = decimal_of(data.get("price")), decimal_of(data.get("vol"))
        if price is None or vol is None or price <= 0 or vol <= 0 or not data.get("ordertxid"):
            raise ValueError(f"not a Kraken trade: {str(data)[:200]}")
        return cls(
            txid=txid,
            ordertxid=str(data["ordertxid"]),
            pair=str(data.get("pair") or ""),
            side=OrderSide.SELL if data.get("type") == "sell" else OrderSide.BUY,
            price=price,
            vol=vol,
            fee=decimal_of(data.get("fee")),
            time=time_of(data.get("time")),
        )
