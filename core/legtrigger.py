"""Order-list legs released on market data: which price a held leg watches, when it is met, what is sent then.

A list's child leg (an OTO child or a bracket's exit) may be **emulated on quotes**: once its parent's fills release
it, the coordinator keeps it (``EMULATED``, nothing at the broker) and checks the quote store once per interval;
when the leg's trigger is met it is sent as an order (NautilusTrader's ``emulation_trigger``, see
``/work/shared/docs/BROKERS.md`` §9). A trailing-stop leg is always held this way where the broker has no native
trailing stop: its trigger moves in the coordinator's state (``core.trailing``) and only the final order is sent.

The price a leg watches (``PriceTrigger``):

* ``DEFAULT`` and ``BID_ASK`` (NautilusTrader's default): the side's own price, the bid for a sell, the ask for a buy;
* ``LAST``: the last trade; ``BID``, ``ASK``: that side whatever the leg's side; ``MID``: halfway between them.

When it is met (``touched``), by order type:

* ``STOP`` / ``STOP_LIMIT``: a sell when the price is at or below ``stop_price``, a buy at or above it;
* ``LIMIT``: a sell when the price is at or above ``price``, a buy at or below it;
* ``TRAILING_STOP``: when ``core.trailing.follow`` says TRIGGERED.

What is sent (``released_terms``): a ``STOP`` or ``TRAILING_STOP`` as a MARKET order, a ``STOP_LIMIT`` as a LIMIT at
its ``price``, a ``LIMIT`` as itself (NautilusTrader sends a MARKET; Exodus keeps the limit, marketable once met).

Pure functions of their arguments: the coordinator passes this module through the workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from core.domain import OrderSide, OrderTerms, OrderType, TimeInForce

__all__ = ["EMULATABLE", "PriceTrigger", "TriggerQuote", "price_of", "released_terms", "touched"]


class PriceTrigger(StrEnum):
    """Which price an emulated leg watches."""

    DEFAULT = "DEFAULT"
    BID_ASK = "BID_ASK"
    LAST = "LAST"
    BID = "BID"
    ASK = "ASK"
    MID = "MID"


#: The order types a leg held on quotes may have.
EMULATABLE: Final = frozenset({OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


class TriggerQuote(BaseModel):
    """The quote a check reads (the symbol's quote at the source risk uses); ``problem`` when there is none usable."""

    model_config = ConfigDict(frozen=True)

    source: str
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    at: datetime | None = None
    problem: str | None = None


def price_of(trigger: PriceTrigger, side: OrderSide, quote: TriggerQuote) -> Decimal | None:
    """The price ``trigger`` reads from ``quote`` for a leg on ``side`` (None: the quote lacks it)."""
    if trigger in (PriceTrigger.DEFAULT, PriceTrigger.BID_ASK):
        return quote.bid if side is OrderSide.SELL else quote.ask
    if trigger is PriceTrigger.LAST:
        return quote.last
    if trigger is PriceTrigger.BID:
        return quote.bid
    if trigger is PriceTrigger.ASK:
        return quote.ask
    if quote.bid is None or quote.ask is None:
        return None
    return (quote.bid + quote.ask) / 2


def touched(terms: OrderTerms, price: Decimal) -> bool:
    """Whether ``price`` meets a held STOP, STOP_LIMIT or LIMIT leg's trigger (trailing stops: ``core.trailing``)."""
    sell = terms.side is OrderSide.SELL
    if terms.type in (OrderType.STOP, OrderType.STOP_LIMIT):
        assert terms.stop_price is not None
        return price <= terms.stop_price if sell else price >= terms.stop_price
    if terms.type is OrderType.LIMIT:
        assert terms.price is not None
        return price >= terms.price if sell else price <= terms.price
    raise ValueError(f"a {terms.type.value} leg is not held on quotes")


def released_terms(terms: OrderTerms) -> dict[str, Any]:
    """The changes that turn a held leg's terms into the order sent once its trigger is met."""
    if terms.type in (OrderType.STOP, OrderType.TRAILING_STOP):
        gtd = terms.time_in_force is TimeInForce.GTD
        return {
            "type": OrderType.MARKET,
            # A MARKET order cannot be GTD: it is sent for the day (it works at once anyway).
            "time_in_force": TimeInForce.DAY if gtd else terms.time_in_force,
            "expire_at": None if gtd else terms.expire_at,
            "price": None,
            "stop_price": None,
            "trail_amount": None,
            "trail_percent": None,
            "activation_price": None,
        }
    if terms.type is OrderType.STOP_LIMIT:
        return {"type": OrderType.LIMIT, "stop_price": None}
    return {}
