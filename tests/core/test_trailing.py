"""core.trailing: activation, the ratchet, the trigger, and the worst case risk values a trailing stop at."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.domain import OrderTerms, TrailState
from core.trailing import TrailOutcome, distance, follow, worst_trigger

D = Decimal


def terms(side: str = "SELL", **trail: str) -> OrderTerms:
    values = {k: D(v) for k, v in trail.items()}
    return OrderTerms(
        account="a",
        symbol="AAPL",
        side=side,
        type="TRAILING_STOP",
        time_in_force="GTC",
        qty=D(1),
        **values,  # type: ignore[arg-type]
    )


def run(t: OrderTerms, prices: list[str]) -> tuple[TrailState, list[TrailOutcome]]:
    trail, outcomes = TrailState(), []
    for p in prices:
        trail, outcome = follow(t, trail, D(p))
        outcomes.append(outcome)
    return trail, outcomes


def test_a_sell_ratchets_up_with_the_bid_never_down_and_triggers_at_or_below() -> None:
    t = terms("SELL", trail_amount="1.00")
    trail, outcomes = run(t, ["100", "101.5", "101", "100.6"])
    assert outcomes == [TrailOutcome.ACTIVATED, TrailOutcome.FOLLOWING, TrailOutcome.FOLLOWING, TrailOutcome.FOLLOWING]
    assert trail.extreme == D("101.5") and trail.trigger == D("100.5") and trail.checks == 4
    trail, outcome = follow(t, trail, D("100.5"))
    assert outcome is TrailOutcome.TRIGGERED and trail.trigger == D("100.5")


def test_a_buy_ratchets_down_with_the_ask_and_triggers_at_or_above() -> None:
    t = terms("BUY", trail_amount="2")
    trail, outcomes = run(t, ["50", "47", "48.9", "49"])
    assert outcomes[-1] is TrailOutcome.TRIGGERED
    assert outcomes[:-1] == [TrailOutcome.ACTIVATED, TrailOutcome.FOLLOWING, TrailOutcome.FOLLOWING]
    assert trail.extreme == D(47) and trail.trigger == D(49)


def test_a_percentage_trail_is_of_the_best_price_rounded_away_from_the_market() -> None:
    sell = terms("SELL", trail_percent="1")
    trail, _ = run(sell, ["429.99"])
    assert trail.trigger == D("425.6901")  # 429.99 * 0.99 = 425.6901
    buy = terms("BUY", trail_percent="3")
    trail, _ = run(buy, ["33.33333"])
    assert trail.trigger == D("34.3333299")  # 34.3333299 exactly: 33.33333 * 1.03


@pytest.mark.parametrize(
    ("side", "activation", "prices", "activated_at"),
    [
        ("SELL", "105", ["100", "104.99", "105", "104"], 2),  # a sell activates once the bid is at or above
        ("BUY", "95", ["100", "95.01", "95", "96"], 2),  # a buy once the ask is at or below
    ],
)
def test_activation_waits_for_the_price(side: str, activation: str, prices: list[str], activated_at: int) -> None:
    trail, outcomes = run(terms(side, trail_amount="3", activation_price=activation), prices)
    assert outcomes[:activated_at] == [TrailOutcome.WAITING] * activated_at
    assert outcomes[activated_at] is TrailOutcome.ACTIVATED
    assert trail.activated and trail.extreme == D(prices[activated_at])


def test_follow_leaves_the_given_trail_as_it_was() -> None:
    before = TrailState(activated=True, extreme=D(10), trigger=D(9), problem="stale", last_quote_at=datetime.now(UTC))
    after, _ = follow(terms("SELL", trail_amount="1"), before, D(11))
    assert before.extreme == D(10) and before.problem == "stale"
    assert after.extreme == D(11) and after.trigger == D(10) and after.problem is None


def test_worst_trigger_is_the_trail_from_the_reference() -> None:
    assert worst_trigger(terms("BUY", trail_amount="1.5"), D(100)) == D("101.5")
    assert worst_trigger(terms("SELL", trail_amount="1.5"), D(100)) == D("98.5")
    assert worst_trigger(terms("SELL", trail_percent="10"), D(50)) == D(45)
    assert worst_trigger(terms("SELL", trail_amount="500"), D(100)) == D(100)  # never valued at or below zero
    assert worst_trigger(terms("BUY", trail_amount="1"), None) is None
    assert distance(terms("BUY", trail_percent="2"), D(200)) == D(4)
