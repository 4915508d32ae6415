"""Kraken's view of the simulated venue's orders: pure functions of the journaled ``SimOrder`` records.

Nothing here is stored apart from the engine's orders, so the venue's answers never disagree with its records:

* the engine knows a Kraken order by its ``txid`` (the order's first engine client order id); an amend gives
  the engine order a new client order id, ``<txid>/<n>``, as the engine models every change;
* what the engine has no field for (the ``cl_ord_id``, the ``userref``, the original terms that ``OrderAmends``
  lists first) travels in the engine order's ``account`` as JSON (``OrderMeta``);
* trade ids derive from the engine's fill exec ids, amend ids from the REPLACED reports.

Kraken's ids are six, five and six characters of ``A-Z2-7`` joined by dashes, ``O...`` for orders and ``T...``
for trades and amends, as in Kraken's examples (``OUF4EM-FRGI2-MQMWZD``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from brokers.kraken.config import KRAKEN_PAIRS, KrakenPair
from core.domain import ExecutionReport, OrderSide, OrderStatus, OrderType, ReportKind
from sim.matching import SimOrder

__all__ = [
    "ORDERTYPE",
    "OrderMeta",
    "amend_id",
    "amends_json",
    "kraken_id",
    "order_json",
    "pair_of",
    "price_text",
    "trade_id",
    "trade_json",
    "trades_of",
    "txid_of",
    "volume_text",
]

#: Kraken ordertype -> the engine's order type (the types the venue implements).
ORDERTYPE = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop-loss": OrderType.STOP,
    "stop-loss-limit": OrderType.STOP_LIMIT,
    "take-profit": OrderType.MARKET_IF_TOUCHED,
    "take-profit-limit": OrderType.LIMIT_IF_TOUCHED,
}
_KRAKEN_TYPE = {v: k for k, v in ORDERTYPE.items()}


def kraken_id(prefix: str, seed: str) -> str:
    """A Kraken-shaped id (``OXXXXX-XXXXX-XXXXXX``), the same for the same ``seed``."""
    text = base64.b32encode(hashlib.sha256(seed.encode()).digest()).decode()
    return f"{prefix}{text[:5]}-{text[5:10]}-{text[10:16]}"


def trade_id(report: ExecutionReport) -> str:
    """The trade txid of an engine fill."""
    return kraken_id("T", f"trade/{report.exec_id}")


def amend_id(txid: str, n: int) -> str:
    """The id of the ``n``-th amend transaction of ``txid`` (0: the original entry)."""
    return kraken_id("T", f"amend/{txid}/{n}")


def volume_text(value: Decimal) -> str:
    """A volume as Kraken writes it (eight decimals)."""
    return f"{value.quantize(Decimal('1e-8')):f}"


def price_text(value: Decimal | None, decimals: int = 5) -> str:
    """A price or cost as Kraken writes it (five decimals; "0.00000" for none)."""
    return f"{(value or Decimal(0)).quantize(Decimal(1).scaleb(-decimals)):f}"


def plain(value: Decimal | None) -> str:
    """A price in an order description: as precise as the pair's tick, at least one decimal ("0" for none)."""
    if value is None:
        return "0"
    text = f"{value.normalize():f}"
    return text if "." in text else f"{text}.0"


def pair_of(symbol: str) -> KrakenPair:
    """The Kraken pair of an engine symbol."""
    return KRAKEN_PAIRS[symbol]


@dataclass(frozen=True)
class OrderMeta:
    """What a Kraken order has that the engine has no field for (kept in the engine order's ``account``)."""

    cl_ord_id: str | None
    userref: int | None
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None

    def dump(self) -> str:
        """The JSON kept as the engine order's account."""
        return json.dumps(
            {
                "cl_ord_id": self.cl_ord_id,
                "userref": self.userref,
                "qty": str(self.qty),
                "price": None if self.price is None else str(self.price),
                "stop_price": None if self.stop_price is None else str(self.stop_price),
            },
            sort_keys=True,
        )

    @classmethod
    def of(cls, order: SimOrder) -> OrderMeta:
        """The meta of an engine order (an order without any: the engine's own terms)."""
        try:
            data = json.loads(order.account)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(None, None, order.qty, order.price, order.stop_price)
        price, stop = data.get("price"), data.get("stop_price")
        return cls(
            cl_ord_id=data.get("cl_ord_id"),
            userref=data.get("userref"),
            qty=Decimal(str(data.get("qty") or order.qty)),
            price=None if price is None else Decimal(price),
            stop_price=None if stop is None else Decimal(stop),
        )


def txid_of(order: SimOrder) -> str:
    """The order's Kraken txid."""
    return order.cl_ord_ids[0]


def status_of(order: SimOrder) -> str:
    """Kraken's status of an engine order."""
    if order.status in (OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED):
        return "open"
    if order.status is OrderStatus.FILLED:
        return "closed"
    if order.status is OrderStatus.EXPIRED:
        return "expired"
    return "canceled"


def trades_of(order: SimOrder) -> list[ExecutionReport]:
    """The engine fills of an order, oldest first."""
    return [r for r in order.reports if r.kind is ReportKind.FILL]


def _epoch(report_or_order: Any) -> float:
    return round(float(report_or_order.timestamp()), 4)


def _descr(order: SimOrder, pair: KrakenPair) -> dict[str, Any]:
    side = "buy" if order.side is OrderSide.BUY else "sell"
    ordertype = _KRAKEN_TYPE.get(order.type, "market")
    price: Decimal | None = None
    price2: Decimal | None = None
    if order.type is OrderType.LIMIT:
        price = order.price
    elif order.type.limit_once_triggered:
        price, price2 = order.stop_price, order.price
    elif order.type.needs_stop_price:
        price = order.stop_price
    text = f"{side} {volume_text(order.qty)} {pair.altname} @ "
    trigger = "take profit" if order.type.is_touched else "stop loss"
    if ordertype == "market":
        text += "market"
    elif order.type.limit_once_triggered:
        text += f"{trigger} {plain(price)} -> limit {plain(price2)}"
    elif order.type.needs_stop_price:
        text += f"{trigger} {plain(price)}"
    else:
        text += f"limit {plain(price)}"
    return {
        "pair": pair.altname,
        "type": side,
        "ordertype": ordertype,
        "price": plain(price) if price is not None else "0",
        "price2": plain(price2) if price2 is not None else "0",
        "leverage": "none",
        "order": text,
        "close": "",
    }


def order_json(order: SimOrder, *, trades: bool = False) -> dict[str, Any]:
    """The order info of OpenOrders, ClosedOrders and QueryOrders."""
    meta = OrderMeta.of(order)
    pair = pair_of(order.symbol)
    fills = trades_of(order)
    cost = sum((f.last_qty * (f.last_price or 0) for f in fills), Decimal(0))
    status = status_of(order)
    misc = []
    if order.triggered:
        misc.append("stopped")
    if any(r.kind is ReportKind.REPLACED for r in order.reports):
        misc.append("amended")
    if fills and status != "closed":
        misc.append("partial")
    data: dict[str, Any] = {
        "refid": None,
        "userref": meta.userref,
        "cl_ord_id": meta.cl_ord_id,
        "status": status,
        "opentm": _epoch(order.created_at),
        "starttm": 0,
        "expiretm": _epoch(order.expire_at) if order.expire_at is not None else 0,
        "descr": _descr(order, pair),
        "vol": volume_text(order.qty),
        "vol_exec": volume_text(order.filled_qty),
        "cost": price_text(cost),
        "fee": price_text(Decimal(0)),
        "price": price_text(order.avg_price),
        "stopprice": price_text(order.stop_price if order.triggered else None),
        "limitprice": price_text(order.price if order.triggered and order.type.limit_once_triggered else None),
        "misc": ",".join(misc),
        "oflags": "fciq" if order.side is OrderSide.BUY else "fcib",
        "margin": False,
    }
    if order.type.needs_stop_price:
        data["trigger"] = "last"
    if status != "open":
        last = next((r for r in reversed(order.reports)), None)
        data["closetm"] = _epoch(last.transact_at if last else order.updated_at)
        canceled = next(
            (r for r in reversed(order.reports) if r.kind in (ReportKind.CANCELED, ReportKind.EXPIRED)), None
        )
        if status in ("canceled", "expired"):
            data["reason"] = _reason(canceled.reason if canceled else None)
    if trades and fills:
        data["trades"] = [trade_id(f) for f in fills]
    return data


def _reason(engine_reason: str | None) -> str:
    text = engine_reason or ""
    if "IOC" in text:
        return "Insufficient liquidity"
    if "GTD" in text:
        return "Order expired"
    return "User requested"


def trade_json(order: SimOrder, report: ExecutionReport, *, number: int) -> dict[str, Any]:
    """One trade of TradesHistory and QueryTrades."""
    pair = pair_of(order.symbol)
    price = report.last_price or Decimal(0)
    return {
        "ordertxid": txid_of(order),
        "postxid": "TKH2SE-M7IF5-CFI7LT",
        "pair": pair.name,
        "time": _epoch(report.transact_at),
        "type": "buy" if order.side is OrderSide.BUY else "sell",
        "ordertype": _KRAKEN_TYPE.get(order.type, "market"),
        "price": price_text(price),
        "cost": price_text(price * report.last_qty),
        "fee": price_text(Decimal(0)),
        "vol": volume_text(report.last_qty),
        "margin": price_text(Decimal(0)),
        "leverage": "0",
        "misc": "",
        "trade_id": number,
        "maker": order.type is OrderType.LIMIT,
    }


def amends_json(order: SimOrder) -> list[dict[str, Any]]:
    """OrderAmends: the original entry, then one per amend, oldest first."""
    meta = OrderMeta.of(order)
    txid = txid_of(order)
    out: list[dict[str, Any]] = []
    filled = Decimal(0)

    def entry(n: int, kind: str, qty: Decimal, price: Decimal | None, stop: Decimal | None, at: Any) -> None:
        item: dict[str, Any] = {
            "amend_id": amend_id(txid, n),
            "amend_type": kind,
            "order_qty": volume_text(qty),
            "remaining_qty": volume_text(max(qty - filled, Decimal(0))),
            "timestamp": int(at.timestamp() * 1_000_000_000),
        }
        if price is not None:
            item["limit_price"] = plain(price)
        if stop is not None:
            item["trigger_price"] = plain(stop)
        out.append(item)

    entry(0, "original", meta.qty, meta.price, meta.stop_price, order.created_at)
    n = 0
    for report in order.reports:
        if report.kind is ReportKind.FILL:
            filled += report.last_qty
        elif report.kind is ReportKind.REPLACED:
            n += 1
            entry(
                n,
                "user",
                report.new_qty or order.qty,
                report.new_price if order.type.needs_price else None,
                report.new_stop_price if order.type.needs_stop_price else None,
                report.transact_at,
            )
    return out
