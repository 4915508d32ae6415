"""The simulated venue's matching model (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal as D

import pytest

from core.domain import (
    CancelOrder,
    OrderSide,
    OrderStatus,
    OrderType,
    PegType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)
from sim.feed import PriceFeed
from sim.matching import Auctions, MatchingEngine
from tests.harness import static_instruments

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> MatchingEngine:
    instruments = list(static_instruments())
    feed = PriceFeed(instruments, seed=1)
    feed.set_mid("AAPL", D("100.00"))  # bid 99.99 / ask 100.01, 500 shown
    return MatchingEngine(feed, instruments, venue="sim", clock=clock)


def order(
    cid: str = "C1",
    *,
    side: str = "BUY",
    qty: str = "100",
    type: str = "MARKET",
    price: str | None = None,
    stop: str | None = None,
    tif: str = "GTC",
    **kw: object,
) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=cid,
        account="a",
        symbol=kw.pop("symbol", "AAPL"),
        side=OrderSide(side),  # type: ignore[arg-type]
        type=OrderType(type),
        time_in_force=TimeInForce(tif),
        qty=D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        **kw,
    )  # type: ignore[arg-type]


def kinds(result) -> list[str]:  # type: ignore[no-untyped-def]
    return [r.kind.value for r in result.reports]


def test_market_buy_fills_at_the_ask(engine: MatchingEngine) -> None:
    res = engine.submit(order(qty="100"))
    assert res.ack.accepted and kinds(res) == ["ACCEPTED", "FILL"]
    fill = res.reports[-1]
    assert fill.last_price == D("100.01") and fill.cum_qty == D(100) and fill.leaves_qty == 0


def test_market_sell_fills_at_the_bid(engine: MatchingEngine) -> None:
    fill = engine.submit(order(side="SELL", qty="10")).reports[-1]
    assert fill.last_price == D("99.99")


def test_order_larger_than_the_displayed_size_fills_in_pieces(engine: MatchingEngine) -> None:
    res = engine.submit(order(qty="1200"))
    assert res.reports[-1].last_qty == D(500) and res.reports[-1].leaves_qty == D(700)
    step1 = engine.step()
    assert [r.last_qty for r in step1.reports] == [D(500)]
    step2 = engine.step()
    assert [r.last_qty for r in step2.reports] == [D(200)]
    assert engine.status("C1").status is OrderStatus.FILLED


def test_limit_rests_until_the_market_reaches_it(engine: MatchingEngine) -> None:
    res = engine.submit(order(type="LIMIT", price="99.00"))
    assert kinds(res) == ["ACCEPTED"]
    assert engine.step().reports == []
    engine.feed.set_mid("AAPL", D("98.99"))
    fill = engine.step().reports[0]
    assert fill.kind is ReportKind.FILL and fill.last_price == D("99.00")  # the new ask, at the limit


def test_stop_triggers_then_trades_at_market(engine: MatchingEngine) -> None:
    res = engine.submit(order(side="SELL", type="STOP", stop="95.00"))
    assert kinds(res) == ["ACCEPTED"]
    engine.feed.set_mid("AAPL", D("95.00"))  # bid 94.99 <= 95
    assert kinds(engine.step()) == ["TRIGGERED", "FILL"]


def test_stop_limit_triggers_and_rests_at_its_limit(engine: MatchingEngine) -> None:
    engine.submit(order(type="STOP_LIMIT", stop="105.00", price="105.50"))
    engine.feed.set_mid("AAPL", D("106.00"))  # ask 106.01: triggers, but above the limit
    assert kinds(engine.step()) == ["TRIGGERED"]
    engine.feed.set_mid("AAPL", D("105.40"))
    assert kinds(engine.step()) == ["FILL"]


def test_market_if_touched_buy_triggers_when_the_price_falls_to_it(engine: MatchingEngine) -> None:
    res = engine.submit(order(type="MARKET_IF_TOUCHED", stop="98.00"))
    assert kinds(res) == ["ACCEPTED"]  # ask 100.01 is above the touch price: waits
    engine.feed.set_mid("AAPL", D("102.00"))  # rising (a stop would trigger): a touched buy does not
    assert kinds(engine.step()) == []
    engine.feed.set_mid("AAPL", D("97.99"))  # ask 98.00 <= 98
    triggered, fill = engine.step().reports
    assert triggered.kind is ReportKind.TRIGGERED and fill.kind is ReportKind.FILL
    assert fill.last_price == D("98.00")


def test_market_if_touched_sell_triggers_when_the_price_rises_to_it(engine: MatchingEngine) -> None:
    engine.submit(order(side="SELL", type="MARKET_IF_TOUCHED", stop="101.00"))
    engine.feed.set_mid("AAPL", D("95.00"))  # falling: a sell stop would trigger, a touched sell does not
    assert kinds(engine.step()) == []
    engine.feed.set_mid("AAPL", D("101.01"))  # bid 101.00 >= 101
    assert kinds(engine.step()) == ["TRIGGERED", "FILL"]


def test_market_if_touched_already_touched_on_arrival_fills_at_once(engine: MatchingEngine) -> None:
    res = engine.submit(order(type="MARKET_IF_TOUCHED", stop="101.00"))  # ask 100.01 <= 101
    assert kinds(res) == ["ACCEPTED", "TRIGGERED", "FILL"]
    assert res.reports[-1].last_price == D("100.01")


def test_limit_if_touched_triggers_then_rests_at_its_limit(engine: MatchingEngine) -> None:
    engine.submit(order(type="LIMIT_IF_TOUCHED", stop="98.00", price="97.50"))
    engine.feed.set_mid("AAPL", D("97.99"))  # ask 98.00: touched, above the 97.50 limit
    assert kinds(engine.step()) == ["TRIGGERED"]
    engine.feed.set_mid("AAPL", D("97.40"))
    fill = engine.step().reports[0]
    assert fill.kind is ReportKind.FILL and fill.last_price == D("97.41")


def test_touched_fok_is_canceled_unless_touched_on_arrival(engine: MatchingEngine) -> None:
    assert kinds(engine.submit(order("F1", type="MARKET_IF_TOUCHED", stop="98.00", tif="FOK"))) == [
        "ACCEPTED",
        "CANCELED",
    ]
    assert kinds(engine.submit(order("F2", type="MARKET_IF_TOUCHED", stop="101.00", tif="FOK")))[-1] == "FILL"


def test_pegged_orders(engine: MatchingEngine) -> None:
    market = engine.submit(order("P1", type="PEGGED", peg_type=PegType.MARKET))
    assert market.reports[-1].last_price == D("100.01")
    mid = engine.submit(order("P2", type="PEGGED", peg_type=PegType.MIDPOINT))
    assert mid.reports[-1].last_price == D("100.00")
    primary = engine.submit(order("P3", type="PEGGED", peg_type=PegType.PRIMARY))
    assert kinds(primary) == ["ACCEPTED"]  # pegged to the bid: passive, rests


def test_ioc_cancels_the_unfilled_rest(engine: MatchingEngine) -> None:
    res = engine.submit(order(qty="700", tif="IOC"))
    assert kinds(res) == ["ACCEPTED", "FILL", "CANCELED"]
    assert engine.status("C1").cum_qty == D(500)


def test_fok_fills_completely_or_not_at_all(engine: MatchingEngine) -> None:
    assert kinds(engine.submit(order("F1", qty="700", tif="FOK"))) == ["ACCEPTED", "CANCELED"]
    assert kinds(engine.submit(order("F2", qty="300", tif="FOK"))) == ["ACCEPTED", "FILL"]
    assert kinds(engine.submit(order("F3", type="LIMIT", price="90.00", tif="FOK"))) == ["ACCEPTED", "CANCELED"]


def test_gtd_expires_after_its_time(engine: MatchingEngine, clock: Clock) -> None:
    engine.submit(order(type="LIMIT", price="90.00", tif="GTD", expire_at=NOW + timedelta(minutes=5)))
    assert engine.step().reports == []
    clock.now = NOW + timedelta(minutes=6)
    assert kinds(engine.step()) == ["EXPIRED"]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"symbol": "NOPE"}, "UNKNOWN_SYMBOL"),
        ({"qty": "0.5"}, "INCORRECT_QUANTITY"),
        ({"qty": "100001"}, "INCORRECT_QUANTITY"),
        ({"type": "LIMIT", "price": "100.001"}, "INVALID_PRICE"),
        ({"type": "LIMIT"}, "INVALID_PRICE"),
        ({"tif": "GTD"}, "UNSUPPORTED"),
    ],
)
def test_rejects(engine: MatchingEngine, kwargs: dict, reason: str) -> None:
    res = engine.submit(order(**kwargs))
    assert not res.ack.accepted and reason in res.ack.reason
    assert kinds(res) == ["REJECTED"]
    assert engine.status("C1").status is OrderStatus.REJECTED


def test_duplicate_client_order_id_is_refused_without_touching_the_original(engine: MatchingEngine) -> None:
    engine.submit(order(type="LIMIT", price="90.00"))
    res = engine.submit(order(type="LIMIT", price="90.00"))
    assert not res.ack.accepted and "DUPLICATE" in res.ack.reason and res.reports == []
    assert engine.status("C1").status is OrderStatus.ACCEPTED and len(engine.open_orders()) == 1


def test_cancel_then_cancel_again_is_too_late(engine: MatchingEngine) -> None:
    engine.submit(order(type="LIMIT", price="90.00"))
    req = CancelOrder(cl_ord_id="C1", symbol="AAPL", side=OrderSide.BUY, qty=D(100))
    assert engine.cancel(req).ack.accepted
    again = engine.cancel(req)
    assert not again.ack.accepted and "TOO_LATE" in again.ack.reason and kinds(again) == ["CANCEL_REJECTED"]
    unknown = engine.cancel(req.model_copy(update={"cl_ord_id": "nope"}))
    assert unknown.ack.not_found


def test_replace_moves_the_order_under_a_new_id_and_may_fill_it(engine: MatchingEngine) -> None:
    engine.submit(order(type="LIMIT", price="90.00"))
    res = engine.replace(
        ReplaceOrder(
            orig_cl_ord_id="C1",
            cl_ord_id="C1.1",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(50),
            price=D("101.00"),
        )
    )
    assert res.ack.accepted and kinds(res) == ["REPLACED", "FILL"]
    assert engine.status("C1.1").status is OrderStatus.FILLED
    assert engine.status("C1") is engine.status("C1.1") or engine.status("C1").cl_ord_id == "C1.1"


def test_replace_below_the_filled_quantity_is_refused(engine: MatchingEngine) -> None:
    engine.submit(order(qty="1200", type="LIMIT", price="101.00"))  # 500 filled at once
    res = engine.replace(
        ReplaceOrder(
            orig_cl_ord_id="C1",
            cl_ord_id="C1.1",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(400),
            price=D("101.00"),
        )
    )
    assert not res.ack.accepted and kinds(res) == ["REPLACE_REJECTED"]


def test_reject_injection(engine: MatchingEngine) -> None:
    engine.reject_symbols.add("AAPL")
    assert "INJECTED" in engine.submit(order()).ack.reason


def test_feed_walk_is_reproducible_and_stays_on_the_tick() -> None:
    from core.instruments import DEFAULT_INSTRUMENTS

    a, b = PriceFeed(DEFAULT_INSTRUMENTS, seed=3), PriceFeed(DEFAULT_INSTRUMENTS, seed=3)
    for _ in range(50):
        a.step()
        b.step()
    assert a.quote("EURUSD") == b.quote("EURUSD")
    inst = next(i for i in DEFAULT_INSTRUMENTS if i.symbol == "EURUSD")
    assert inst.on_tick(a.quote("EURUSD").bid) and a.quote("EURUSD").ask > a.quote("EURUSD").bid


def test_an_order_the_venue_cannot_price_is_canceled_and_the_others_still_match(engine: MatchingEngine) -> None:
    # A midpoint peg 1e30 away cannot be rounded to the tick (decimal.InvalidOperation): on main the submission
    # raised with the order already in the book, and every later step raised too, so nothing matched any more.
    resting = engine.submit(order("R1", type="LIMIT", price="99.00"))
    assert kinds(resting) == ["ACCEPTED"]
    bad = engine.submit(order("P1", type="PEGGED", peg_type=PegType.MIDPOINT, peg_offset=D("1e30")))
    assert kinds(bad) == ["ACCEPTED", "CANCELED"] and "cannot price" in (bad.reports[-1].reason or "")
    assert engine.status("P1").status is OrderStatus.CANCELED
    engine.feed.set_mid("AAPL", D("98.99"))
    step = engine.step()
    assert [(r.cl_ord_id, r.kind) for r in step.reports] == [("R1", ReportKind.FILL)]


@pytest.fixture
def auction_engine(clock: Clock) -> MatchingEngine:
    instruments = list(static_instruments())
    feed = PriceFeed(instruments, seed=1)
    feed.set_mid("AAPL", D("100.00"))
    # A session that opens at 14:30 and closes at 21:00 UTC; the clock stands at 15:00.
    auctions = Auctions(open=time(14, 30), close=time(21, 0))
    return MatchingEngine(feed, instruments, venue="sim", clock=clock, auctions=auctions)


def test_at_the_close_waits_untouched_then_fills_in_full_at_the_close(
    auction_engine: MatchingEngine, clock: Clock
) -> None:
    res = auction_engine.submit(order(qty="700", tif="CLS"))  # more than the 500 shown
    assert kinds(res) == ["ACCEPTED"]
    clock.now = NOW + timedelta(hours=5, minutes=59)
    assert kinds(auction_engine.step()) == []  # 20:59: not yet
    clock.now = NOW + timedelta(hours=6)
    fill = auction_engine.step().reports
    assert [r.kind for r in fill] == [ReportKind.FILL] and fill[0].last_qty == D(700)
    assert auction_engine.find("C1").status is OrderStatus.FILLED  # type: ignore[union-attr]


def test_at_the_open_waits_for_the_next_open_and_an_unfilled_limit_expires_after_it(
    auction_engine: MatchingEngine, clock: Clock
) -> None:
    assert kinds(auction_engine.submit(order(type="LIMIT", price="99.00", tif="OPG"))) == ["ACCEPTED"]
    clock.now = NOW + timedelta(hours=6)
    assert kinds(auction_engine.step()) == []  # the close is not its auction
    clock.now = datetime(2026, 11, 21, 14, 30, tzinfo=UTC)  # the next day's open; ask 100.01 above 99
    expired = auction_engine.step().reports
    assert [r.kind for r in expired] == [ReportKind.EXPIRED] and "opening auction" in (expired[0].reason or "")
    clock.now += timedelta(hours=1)
    assert kinds(auction_engine.step()) == []


def test_a_venue_without_auctions_refuses_opg_and_cls(engine: MatchingEngine) -> None:
    res = engine.submit(order(tif="OPG"))
    assert not res.ack.accepted and "OPG" in (res.ack.reason or "")


def test_open_orders_are_the_working_ones_in_arrival_order_after_every_kind_of_close(
    engine: MatchingEngine, clock: Clock
) -> None:
    # The engine keeps its working orders apart from every order it ever took (a feed step walks only those):
    # whatever closes an order (a fill, a cancel, IOC, FOK, GTD expiry) takes it out, a replace keeps it in
    # place, a reset rebuilds the list, and the list is always what a walk over all orders would give.
    def brute() -> list[str]:
        return [o.venue_order_id for o in engine.all_orders() if o.is_open]

    def working() -> list[str]:
        return [o.venue_order_id for o in engine.open_orders()]

    engine.submit(order("R1", type="LIMIT", price="95.00"))  # rests
    engine.submit(order("M1"))  # fills at once
    engine.submit(order("R2", type="LIMIT", price="94.00"))  # rests
    engine.submit(order("I1", type="LIMIT", price="90.00", tif="IOC"))  # canceled at once
    engine.submit(order("F1", type="LIMIT", price="90.00", tif="FOK"))  # canceled at once
    engine.submit(
        order("G1", type="LIMIT", price="93.00", tif="GTD", expire_at=NOW + timedelta(minutes=1))
    )  # rests, then expires
    engine.submit(order("R3", type="LIMIT", price="92.00"))  # rests, then canceled
    engine.submit(order("P1", type="LIMIT", price="91.00"))  # rests, replaced, then filled
    assert working() == brute() and len(working()) == 5
    assert engine.cancel(CancelOrder(cl_ord_id="R3", symbol="AAPL", side=OrderSide.BUY, qty=D(100))).ack.accepted
    replaced = engine.replace(
        ReplaceOrder(
            orig_cl_ord_id="P1",
            cl_ord_id="P2",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(100),
            price=D("91.50"),
        )
    )
    assert replaced.ack.accepted
    assert working() == brute() and len(working()) == 4
    clock.now = NOW + timedelta(minutes=2)
    engine.step()  # G1 expires
    assert working() == brute() and len(working()) == 3
    engine.feed.set_mid("AAPL", D("91.00"))
    engine.step()  # R1, R2 and P2 trade
    assert working() == brute()
    assert working() == [] and engine.find("P2").status is OrderStatus.FILLED  # type: ignore[union-attr]
    engine.submit(order("R4", type="LIMIT", price="80.00"))
    assert working() == brute() == [engine.find("R4").venue_order_id]  # type: ignore[union-attr]
    # A rebuild from the journal: the working orders of the orders loaded.
    orders = [o.model_copy(deep=True) for o in engine.all_orders()]
    engine.reset(orders)
    assert working() == brute() and len(working()) == 1
    # A step looks at the working orders only (the closed ones are not visited again).
    visited: list[str] = []
    real_match = engine._match

    def spy(o, result, *, whole=False):  # type: ignore[no-untyped-def]
        visited.append(o.cl_ord_id)
        real_match(o, result, whole=whole)

    engine._match = spy  # type: ignore[method-assign]
    engine.step()
    assert visited == ["R4"]
