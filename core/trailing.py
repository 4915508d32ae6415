"""Trailing stops: how an emulated one follows the market, and what risk values one at.

A trailing stop (``OrderType.TRAILING_STOP``) has a trail, ``trail_amount`` (a price distance) or ``trail_percent``
(a percentage of the best price), and may have an ``activation_price``. Where the broker has no native trailing
stop, the order workflow emulates it: the order stays in Exodus (``EMULATED``), a check every
``OrderConfig.trail_check_seconds`` (one durable timer per interval, never one per tick) reads the quote store and
calls ``follow``, and only when the market crosses the trigger is the order sent, as a MARKET order.

Per side (the price a check reads is the one the order would trade against: the bid for a sell, the ask for a buy):

* **sell** (protects a long): from activation (at once, or once the bid is at or above ``activation_price``) the
  extreme is the highest bid seen; the trigger is the extreme less the trail; it triggers when the bid is at or
  below the trigger;
* **buy** (protects a short): the extreme is the lowest ask seen since activation (once the ask is at or below
  ``activation_price``); the trigger is the extreme plus the trail; it triggers when the ask is at or above it.

The trigger only ever moves towards the market (it ratchets): the extreme only improves. Risk values a trailing
stop at its trigger as it would stand now (``worst_trigger``): the trail's distance from the reference price,
above it for a buy, below it for a sell.

Pure functions of their arguments: the workflow passes this module through the sandbox.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import NamedTuple

from core.domain import OrderSide, OrderTerms, TrailState

__all__ = ["TrailStep", "TrailOutcome", "distance", "follow", "trigger_from", "worst_trigger"]

_HUNDRED = Decimal(100)
#: Triggers are kept to this many places (a percentage trail gives long decimals).
_PLACES = Decimal("1e-8")


class TrailOutcome(StrEnum):
    """What one check did."""

    WAITING = "WAITING"  # not activated yet
    ACTIVATED = "ACTIVATED"
    FOLLOWING = "FOLLOWING"
    TRIGGERED = "TRIGGERED"


class TrailStep(NamedTuple):
    """One check's result: the trail after it, and what happened."""

    trail: TrailState
    outcome: TrailOutcome


def distance(terms: OrderTerms, base: Decimal) -> Decimal:
    """The trail's distance from ``base`` (the amount, or the percentage of ``base``)."""
    if terms.trail_amount is not None:
        return terms.trail_amount
    if terms.trail_percent is None:
        raise ValueError("a trailing stop needs trail_amount or trail_percent")
    return base * terms.trail_percent / _HUNDRED


def trigger_from(terms: OrderTerms, extreme: Decimal) -> Decimal:
    """The trigger the best price ``extreme`` gives (rounded away from the market, never below zero)."""
    if terms.side is OrderSide.SELL:
        return max((extreme - distance(terms, extreme)).quantize(_PLACES, rounding=ROUND_FLOOR), Decimal(0))
    return (extreme + distance(terms, extreme)).quantize(_PLACES, rounding=ROUND_CEILING)


def worst_trigger(terms: OrderTerms, reference: Decimal | None) -> Decimal | None:
    """What risk values a trailing stop at: the trigger at the trail's distance from ``reference`` (None: no price).

    A sell's trigger that would be at or below zero is valued at the reference (it can never trigger lower than
    the market it would sell into).
    """
    if reference is None or reference <= 0:
        return None
    trigger = trigger_from(terms, reference)
    return trigger if trigger > 0 else reference


def follow(terms: OrderTerms, trail: TrailState, price: Decimal) -> TrailStep:
    """One check at the side's current ``price``: activate, ratchet the trigger, or trigger.

    ``trail`` is not changed; the step returns the new one (``checks`` counted, ``problem`` cleared).
    """
    sell = terms.side is OrderSide.SELL
    new = trail.model_copy(update={"checks": trail.checks + 1, "last_price": price, "problem": None})
    if not trail.activated:
        activation = terms.activation_price
        if activation is not None and (price < activation if sell else price > activation):
            return TrailStep(new, TrailOutcome.WAITING)
        new.activated = True
        new.extreme = price
        new.trigger = trigger_from(terms, price)
        return TrailStep(new, TrailOutcome.ACTIVATED)
    assert trail.extreme is not None
    extreme = max(trail.extreme, price) if sell else min(trail.extreme, price)
    if extreme != trail.extreme:
        new.extreme = extreme
        new.trigger = trigger_from(terms, extreme)
    assert new.trigger is not None
    if price <= new.trigger if sell else price >= new.trigger:
        return TrailStep(new, TrailOutcome.TRIGGERED)
    return TrailStep(new, TrailOutcome.FOLLOWING)
