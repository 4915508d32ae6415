"""Alpaca's view of the simulated venue's orders: pure functions of the journaled ``SimOrder`` records.

Nothing here is stored: every Alpaca order, fill activity, position and the account are derived from the paper
matching engine's orders and their reports (which the venue's journal holds), so the venue's answers can never
disagree with its records.

An Alpaca replace (``PATCH /v2/orders/{id}``) creates a **new** order with a new id and its own ``qty`` and
``filled_qty`` (Alpaca-API#165: the replacement works its own quantity); the old order ends ``replaced``. The
engine models a replace as the same order with a new client order id and a new total quantity, so one
``SimOrder`` is a chain of Alpaca orders ("legs"): leg k starts at the k-th REPLACED report, its quantity is the
new total less what the chain had filled by then, and the fills in between are its own. Alpaca ids are
derived from the engine's order id and the leg's position, execution ids from the engine's exec ids.

Simplification: the engine keeps only an order's current prices, so a leg that was replaced shows the prices
its replacement was given (nobody reads a replaced order's prices; the adapter does not).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.domain import ExecutionReport, OrderSide, OrderType, ReportKind, TimeInForce
from sim.matching import SimOrder

__all__ = [
    "ALPACA_TIF",
    "ALPACA_TYPE",
    "Leg",
    "activity_json",
    "alpaca_time",
    "asset_id",
    "decimal_text",
    "execution_id",
    "legs_of",
    "order_json",
]

_NS = uuid.UUID("6f1f0d1e-8a55-4e8e-9a57-6c0c5e4a1a70")

ALPACA_TYPE = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop",
    OrderType.STOP_LIMIT: "stop_limit",
}
ALPACA_TIF = {
    TimeInForce.DAY: "day",
    TimeInForce.GTC: "gtc",
    TimeInForce.IOC: "ioc",
    TimeInForce.FOK: "fok",
    TimeInForce.OPG: "opg",
    TimeInForce.CLS: "cls",
}


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as Alpaca writes it: a plain string without exponent or trailing zeros."""
    if value is None:
        return None
    text = f"{value.normalize():f}"
    return text


def alpaca_time(at: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds, as Alpaca writes timestamps."""
    if at is None:
        return None
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def asset_id(symbol: str) -> str:
    """A stable asset id per symbol."""
    return str(uuid.uuid5(_NS, f"asset/{symbol}"))


def execution_id(report: ExecutionReport) -> str:
    """The trade_updates ``execution_id`` of an engine fill."""
    return str(uuid.uuid5(_NS, f"exec/{report.exec_id}"))


def _leg_id(order: SimOrder, index: int) -> str:
    return str(uuid.uuid5(_NS, f"order/{order.venue_order_id}/{index}"))


@dataclass
class Leg:
    """One Alpaca order of a replace chain, as of some report."""

    order: SimOrder
    index: int
    alpaca_id: str
    cl_ord_id: str
    qty: Decimal
    #: What the chain had filled when this leg started.
    base: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    created_at: datetime
    status: str = "new"
    updated_at: datetime | None = None
    filled: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    filled_at: datetime | None = None
    canceled_at: datetime | None = None
    expired_at: datetime | None = None
    failed_at: datetime | None = None
    replaced_at: datetime | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    #: (engine fill report, this leg's filled qty after it)
    fills: list[tuple[ExecutionReport, Decimal]] = field(default_factory=list)

    @property
    def avg_price(self) -> Decimal | None:
        """Average price of this leg's fills."""
        return self.notional / self.filled if self.filled > 0 else None

    @property
    def open(self) -> bool:
        """Whether this leg still works."""
        return self.status in ("new", "partially_filled", "accepted", "pending_new")


def legs_of(order: SimOrder, upto: int | None = None) -> list[Leg]:
    """The Alpaca orders of ``order``'s chain, as of its first ``upto`` reports (all by default)."""
    reports = order.reports if upto is None else order.reports[:upto]
    replaced = [r for r in order.reports if r.kind is ReportKind.REPLACED]
    first_qty = next((r.leaves_qty for r in order.reports if r.kind is ReportKind.ACCEPTED), order.qty)
    price, stop = (replaced[0].new_price, replaced[0].new_stop_price) if replaced else (order.price, order.stop_price)
    legs = [
        Leg(
            order=order,
            index=0,
            alpaca_id=_leg_id(order, 0),
            cl_ord_id=order.cl_ord_ids[0],
            qty=first_qty,
            base=Decimal(0),
            limit_price=price,
            stop_price=stop,
            created_at=order.created_at,
            updated_at=order.created_at,
        )
    ]
    chain = Decimal(0)
    for report in reports:
        leg = legs[-1]
        at = report.transact_at
        leg.updated_at = at
        if report.kind is ReportKind.FILL:
            leg.filled += report.last_qty
            leg.notional += report.last_qty * (report.last_price or Decimal(0))
            chain += report.last_qty
            leg.filled_at = at
            leg.status = "filled" if leg.filled >= leg.qty else "partially_filled"
            leg.fills.append((report, leg.filled))
        elif report.kind is ReportKind.CANCELED:
            leg.status, leg.canceled_at = "canceled", at
        elif report.kind is ReportKind.EXPIRED:
            leg.status, leg.expired_at = "expired", at
        elif report.kind is ReportKind.REJECTED:
            leg.status, leg.failed_at = "rejected", at
        elif report.kind is ReportKind.REPLACED:
            index = len(legs)
            new = Leg(
                order=order,
                index=index,
                alpaca_id=_leg_id(order, index),
                cl_ord_id=report.cl_ord_id,
                qty=(report.new_qty or order.qty) - chain,
                base=chain,
                limit_price=report.new_price,
                stop_price=report.new_stop_price,
                created_at=at,
                updated_at=at,
                replaces=leg.alpaca_id,
            )
            leg.status, leg.replaced_at, leg.replaced_by = "replaced", at, new.alpaca_id
            legs.append(new)
    return legs


def order_json(leg: Leg) -> dict[str, Any]:
    """The leg as Alpaca's Order object."""
    order = leg.order
    terms_type = ALPACA_TYPE.get(order.type, "market")
    return {
        "id": leg.alpaca_id,
        "client_order_id": leg.cl_ord_id,
        "created_at": alpaca_time(leg.created_at),
        "updated_at": alpaca_time(leg.updated_at),
        "submitted_at": alpaca_time(leg.created_at),
        "filled_at": alpaca_time(leg.filled_at) if leg.status == "filled" else None,
        "expired_at": alpaca_time(leg.expired_at),
        "canceled_at": alpaca_time(leg.canceled_at),
        "failed_at": alpaca_time(leg.failed_at),
        "replaced_at": alpaca_time(leg.replaced_at),
        "replaced_by": leg.replaced_by,
        "replaces": leg.replaces,
        "asset_id": asset_id(order.symbol),
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": decimal_text(leg.qty),
        "filled_qty": decimal_text(leg.filled),
        "filled_avg_price": decimal_text(leg.avg_price),
        "order_class": "",
        "order_type": terms_type,
        "type": terms_type,
        "side": "buy" if order.side is OrderSide.BUY else "sell",
        "time_in_force": ALPACA_TIF.get(order.time_in_force, "day"),
        "limit_price": decimal_text(leg.limit_price) if order.type.needs_price else None,
        "stop_price": decimal_text(leg.stop_price) if order.type.needs_stop_price else None,
        "status": leg.status,
        "extended_hours": False,
        "legs": None,
    }


def activity_json(leg: Leg, report: ExecutionReport, cum: Decimal) -> dict[str, Any]:
    """One FILL account activity (``GET /v2/account/activities/FILL``) of a leg's fill."""
    at = report.transact_at.astimezone(UTC)
    stamp = at.strftime("%Y%m%d%H%M%S") + f"{at.microsecond // 1000:03d}"
    done = cum >= leg.qty
    return {
        "id": f"{stamp}::{uuid.uuid5(_NS, 'activity/' + report.exec_id)}",
        "activity_type": "FILL",
        "transaction_time": alpaca_time(at),
        "type": "fill" if done else "partial_fill",
        "price": decimal_text(report.last_price),
        "qty": decimal_text(report.last_qty),
        "side": "buy" if leg.order.side is OrderSide.BUY else "sell",
        "symbol": leg.order.symbol,
        "leaves_qty": decimal_text(max(leg.qty - cum, Decimal(0))),
        "order_id": leg.alpaca_id,
        "cum_qty": decimal_text(cum),
        "order_status": "filled" if done else "partially_filled",
    }
