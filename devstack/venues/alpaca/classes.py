"""Alpaca's order classes at the local venue: a bracket's, OTO's or OCO's legs (BROKERS.md §1 and §9).

An order of class ``bracket`` (``take_profit`` and ``stop_loss``), ``oto`` (one of them) or ``oco`` (a ``limit``
order with its ``stop_loss``) is one request; its legs are Alpaca orders of their own, with Alpaca's own ids and
client order ids, shown in the head's ``legs`` (the POST answer, and lookups with ``nested=true``):

* a bracket's or OTO's legs are ``held`` until the entry is **completely** filled, then work (``new``) for the
  entry's quantity; an entry that ends unfilled cancels them; one that ends partly filled activates them for what
  filled;
* a bracket's exits, and an OCO's two orders, are one-cancels-other: a leg completely filled cancels the others
  (a cancel by the venue, with its ``canceled`` event); both filled in the same step are both filled (the cancel
  comes too late, as at Alpaca);
* the OCO's stop works at once beside its limit.

Simplification: Alpaca reduces the other exit when one partly fills; the venue leaves it at its size until the
filling leg completes (then cancels it). The legs' holding state lives in the venue's process: a venue restarted
from its journal knows the legs it had activated (they are engine orders) but no longer the held ones.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.domain import OrderSide, OrderType, TimeInForce
from devstack.venues.alpaca.model import ALPACA_TIF, ALPACA_TYPE, alpaca_time, asset_id, decimal_text

__all__ = ["HeldLeg", "OrderClass", "Trail", "held_json", "trail_json"]

_NS = uuid.UUID("0b6f2b8e-41a4-4a55-9d3c-3f3c2f0e7a11")


@dataclass
class HeldLeg:
    """One leg of an order class: held (not yet in the engine), working in the engine (``active``), or canceled."""

    role: str
    alpaca_id: str
    cl_ord_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    qty: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    created_at: datetime
    status: str = "held"
    active: bool = False
    canceled_at: datetime | None = None

    @classmethod
    def new(cls, head: str, role: str, **terms: Any) -> HeldLeg:
        """A leg of the head order ``head`` (ids derived from the head's client order id and the leg's role)."""
        return cls(
            role=role,
            alpaca_id=str(uuid.uuid5(_NS, f"leg/{head}/{role}")),
            cl_ord_id=str(uuid.uuid5(_NS, f"leg-client/{head}/{role}")),
            **terms,
        )


@dataclass
class OrderClass:
    """A head order (by its first client order id) and its legs."""

    order_class: str
    head: str
    legs: list[HeldLeg] = field(default_factory=list)
    #: The contingency has played out (legs activated or canceled, or the other order canceled): it acts once.
    settled: bool = False


def held_json(leg: HeldLeg, order_class: str) -> dict[str, Any]:
    """A leg not (yet) in the engine, as Alpaca's Order object."""
    terms_type = ALPACA_TYPE[leg.type]
    return {
        "id": leg.alpaca_id,
        "client_order_id": leg.cl_ord_id,
        "created_at": alpaca_time(leg.created_at),
        "updated_at": alpaca_time(leg.canceled_at or leg.created_at),
        "submitted_at": alpaca_time(leg.created_at),
        "filled_at": None,
        "expired_at": None,
        "canceled_at": alpaca_time(leg.canceled_at),
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": asset_id(leg.symbol),
        "symbol": leg.symbol,
        "asset_class": "us_equity",
        "notional": None,
        "qty": decimal_text(leg.qty),
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_class": order_class,
        "order_type": terms_type,
        "type": terms_type,
        "side": "buy" if leg.side is OrderSide.BUY else "sell",
        "time_in_force": ALPACA_TIF.get(leg.time_in_force, "day"),
        "limit_price": decimal_text(leg.limit_price) if leg.type.needs_price else None,
        "stop_price": decimal_text(leg.stop_price) if leg.type.needs_stop_price else None,
        "status": leg.status,
        "extended_hours": False,
        "legs": None,
    }


@dataclass
class Trail:
    """A ``trailing_stop`` order, held by the venue until its stop is crossed.

    Its stop follows the best price since it was placed (``hwm``), at ``trail_price`` or ``trail_percent`` from it;
    once the market crosses the stop it goes to the engine as a market order (under its own client order id) and
    fills there. The venue trails the mid of its feed.
    """

    alpaca_id: str
    cl_ord_id: str
    symbol: str
    side: OrderSide
    time_in_force: TimeInForce
    qty: Decimal
    trail_price: Decimal | None
    trail_percent: Decimal | None
    hwm: Decimal
    created_at: datetime
    status: str = "new"
    triggered: bool = False
    canceled_at: datetime | None = None

    @property
    def stop_price(self) -> Decimal:
        """Where it triggers now: ``hwm`` less the trail for a sell, plus it for a buy (to the cent)."""
        if self.trail_price is not None:
            gap = self.trail_price
        else:
            assert self.trail_percent is not None
            gap = self.hwm * self.trail_percent / 100
        stop = self.hwm - gap if self.side is OrderSide.SELL else self.hwm + gap
        return stop.quantize(Decimal("0.01"))

    def follow(self, price: Decimal) -> bool:
        """Move ``hwm`` with ``price``; True when ``price`` crossed the stop (the order triggers)."""
        if self.side is OrderSide.SELL:
            self.hwm = max(self.hwm, price)
            return price <= self.stop_price
        self.hwm = min(self.hwm, price)
        return price >= self.stop_price


def trail_json(trail: Trail, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trailing stop as Alpaca's Order object: ``base`` (the engine's view once it triggered) or its own."""
    data = (
        dict(base)
        if base is not None
        else {
            "id": trail.alpaca_id,
            "client_order_id": trail.cl_ord_id,
            "created_at": alpaca_time(trail.created_at),
            "updated_at": alpaca_time(trail.canceled_at or trail.created_at),
            "submitted_at": alpaca_time(trail.created_at),
            "filled_at": None,
            "expired_at": None,
            "canceled_at": alpaca_time(trail.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": asset_id(trail.symbol),
            "symbol": trail.symbol,
            "asset_class": "us_equity",
            "notional": None,
            "qty": decimal_text(trail.qty),
            "filled_qty": "0",
            "filled_avg_price": None,
            "order_class": "",
            "side": "buy" if trail.side is OrderSide.BUY else "sell",
            "time_in_force": ALPACA_TIF.get(trail.time_in_force, "day"),
            "limit_price": None,
            "status": trail.status,
            "extended_hours": False,
            "legs": None,
        }
    )
    data.update(
        {
            "id": trail.alpaca_id,
            "type": "trailing_stop",
            "order_type": "trailing_stop",
            "stop_price": decimal_text(trail.stop_price),
            "trail_price": decimal_text(trail.trail_price),
            "trail_percent": decimal_text(trail.trail_percent),
            "hwm": decimal_text(trail.hwm),
        }
    )
    return {k: v for k, v in data.items() if v is not None or k not in ("trail_price", "trail_percent")}
