"""Legs held on quotes: which price each trigger reads, when a held leg's trigger is met, what is sent then."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.domain import OrderSide, OrderTerms, OrderType, TimeInForce
from core.legtrigger import EMULATABLE, PriceTrigger, TriggerQuote, price_of, released_terms, touched

D = Decimal
P = PriceTrigger
Q = TriggerQuote(source="paper", bid=D("99"), ask=D("101"), last=D("100.5"), at=datetime(2026, 1, 5, tzinfo=UTC))


def terms(side: str, type: str, **kw: object) -> OrderTerms:
    return OrderTerms(
        account="a",
        symbol="AAPL",
        side=OrderSide(side),
        type=OrderType(type),
        time_in_force=TimeInForce.GTC,
        qty=D(10),
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("trigger", "side", "price"),
    [
        (P.DEFAULT, "SELL", "99"),
        (P.DEFAULT, "BUY", "101"),
        (P.BID_ASK, "SELL", "99"),
        (P.BID_ASK, "BUY", "101"),
        (P.LAST, "SELL", "100.5"),
        (P.LAST, "BUY", "100.5"),
        (P.BID, "BUY", "99"),
        (P.BID, "SELL", "99"),
        (P.ASK, "SELL", "101"),
        (P.ASK, "BUY", "101"),
        (P.MID, "SELL", "100"),
        (P.MID, "BUY", "100"),
    ],
)
def test_each_trigger_reads_its_price(trigger: PriceTrigger, side: str, price: str) -> None:
    assert price_of(trigger, OrderSide(side), Q) == D(price)


def test_a_quote_without_the_price_gives_none() -> None:
    bare = TriggerQuote(source="paper", bid=D("99"))
    assert price_of(P.LAST, OrderSide.SELL, bare) is None
    assert price_of(P.MID, OrderSide.SELL, bare) is None
    assert price_of(P.DEFAULT, OrderSide.BUY, bare) is None
    assert price_of(P.DEFAULT, OrderSide.SELL, bare) == D("99")


@pytest.mark.parametrize(
    ("side", "type", "level", "met", "not_met"),
    [
        ("SELL", "STOP", {"stop_price": D(95)}, "95", "95.01"),  # a sell stop: at or below
        ("BUY", "STOP", {"stop_price": D(105)}, "105", "104.99"),  # a buy stop: at or above
        ("SELL", "STOP_LIMIT", {"stop_price": D(95), "price": D(94)}, "94.5", "96"),
        ("SELL", "LIMIT", {"price": D(110)}, "110", "109.99"),  # a sell limit: at or above
        ("BUY", "LIMIT", {"price": D(90)}, "89", "90.01"),  # a buy limit: at or below
    ],
)
def test_touched_by_side_and_type(side: str, type: str, level: dict[str, D], met: str, not_met: str) -> None:
    t = terms(side, type, **level)
    assert touched(t, D(met))
    assert not touched(t, D(not_met))


def test_a_type_that_cannot_be_held_is_refused() -> None:
    assert OrderType.MARKET not in EMULATABLE
    with pytest.raises(ValueError, match="not held on quotes"):
        touched(terms("SELL", "MARKET"), D(1))


def test_what_is_sent_once_triggered() -> None:
    stop = terms("SELL", "STOP", stop_price=D(95))
    assert stop.model_copy(update=released_terms(stop)).type is OrderType.MARKET
    sent = stop.model_copy(update=released_terms(stop))
    assert sent.stop_price is None and sent.problems() == []
    stop_limit = terms("SELL", "STOP_LIMIT", stop_price=D(95), price=D(94))
    sent = stop_limit.model_copy(update=released_terms(stop_limit))
    assert (sent.type, sent.price, sent.stop_price) == (OrderType.LIMIT, D(94), None) and sent.problems() == []
    trailing = terms("SELL", "TRAILING_STOP", trail_percent=D(1), activation_price=D(100))
    sent = trailing.model_copy(update=released_terms(trailing))
    assert (sent.type, sent.trail_percent, sent.activation_price) == (OrderType.MARKET, None, None)
    assert sent.problems() == []
    limit = terms("SELL", "LIMIT", price=D(110))
    assert released_terms(limit) == {}
    gtd = terms("SELL", "STOP", stop_price=D(95)).model_copy(
        update={"time_in_force": TimeInForce.GTD, "expire_at": datetime(2030, 1, 1, tzinfo=UTC)}
    )
    sent = gtd.model_copy(update=released_terms(gtd))
    assert (sent.type, sent.time_in_force, sent.expire_at) == (OrderType.MARKET, TimeInForce.DAY, None)
    assert sent.problems() == []
