"""The simulated venue journals first: a journal failure at any point never lets its answers, its reports and
its own records disagree.

A ``MemoryJournal`` stands in for Postgres and fails on demand: before the commit (the write is lost) or after
it (the commit went through but the caller heard an error). After every scenario ``assert_agrees`` checks
the three views: the venue's book equals the journal's; every journaled report was emitted exactly once and
nothing else was; a venue restarted from the journal has the same book.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal as D
from typing import Any

import pytest

from core.domain import (
    CancelOrder,
    ExecutionReport,
    OrderSide,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)
from core.errors import BrokerUnavailable
from sim.matching import MatchResult
from sim.venue import SimVenue
from tests.harness import static_instruments
from tests.sim.memory_journal import MemoryJournal

pytestmark = pytest.mark.asyncio


class Venue:
    """A journaled venue, what it emitted, and how to restart it from its journal."""

    def __init__(self) -> None:
        self.journal = MemoryJournal()
        self.emitted: list[ExecutionReport] = []
        self.venue = self._build()

    def _build(self) -> SimVenue:
        venue = SimVenue(static_instruments(), name="paper", tick_interval=0, journal=self.journal)
        venue.add_listener(self.emitted.append)
        return venue

    async def start(self) -> None:
        self.emitted.extend(await self.venue.start())
        await self.venue.set_mid("AAPL", D("100.00"))  # bid 99.99 / ask 100.01, 500 shown

    async def restarted_book(self) -> dict[str, dict[str, Any]]:
        """The book a new process would load from the journal."""
        fresh = SimVenue(static_instruments(), name="paper", tick_interval=0, journal=self.journal)
        await fresh.start()
        return book(fresh)

    async def assert_agrees(self) -> None:
        assert not self.venue.unsaved
        assert book(self.venue) == self.journal.orders, "the venue's book differs from its journal"
        exec_ids = [r.exec_id for r in self.emitted]
        assert len(exec_ids) == len(set(exec_ids)), f"a report was emitted twice: {exec_ids}"
        assert set(exec_ids) == set(self.journal.reports), "emitted reports differ from the journaled ones"
        for r in self.emitted:
            assert r.model_dump(mode="json") == self.journal.reports[r.exec_id]
        assert await self.restarted_book() == self.journal.orders


def book(venue: SimVenue) -> dict[str, dict[str, Any]]:
    engine = venue.engine
    orders = [*engine.all_orders(), *engine._rejected.values()]
    return {o.venue_order_id: o.model_dump(mode="json") for o in orders}


def submit(cid: str, *, qty: str = "100", type: str = "MARKET", price: str | None = None) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=cid,
        account="a",
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType(type),
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        price=None if price is None else D(price),
    )


def cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


@pytest.fixture
async def v() -> Venue:
    venue = Venue()
    await venue.start()
    return venue


def kinds_of(reports: list[ExecutionReport], cl_ord_id: str) -> list[str]:
    return [r.kind.value for r in reports if r.cl_ord_id.split(".")[0] == cl_ord_id]


async def raises_unavailable(call: Callable[[], Any]) -> None:
    with pytest.raises(BrokerUnavailable):
        await call()


async def test_submit_whose_journal_write_fails_is_never_answered_nor_revealed(v: Venue) -> None:
    order = cid()
    v.journal.fail_before_commit = 2
    await raises_unavailable(lambda: v.venue.submit(submit(order)))
    # While the journal cannot take the change, the venue reveals nothing about it: no status, no report.
    await raises_unavailable(lambda: v.venue.status(order))
    assert v.journal.status(order) is None and kinds_of(v.emitted, order) == []
    assert await v.restarted_book() == v.journal.orders  # a process dying now: the order never existed
    # The journal is back: the order the engine took is journaled before anyone learns of it.
    status = await v.venue.status(order)
    assert status is not None and status.status is OrderStatus.FILLED
    assert v.journal.status(order) == "FILLED"
    assert kinds_of(v.emitted, order) == ["ACCEPTED", "FILL"]
    await v.assert_agrees()


async def test_submit_whose_commit_went_through_but_answer_was_lost_is_saved_once(v: Venue) -> None:
    order = cid()
    v.journal.fail_after_commit = 1
    await raises_unavailable(lambda: v.venue.submit(submit(order)))
    assert v.journal.status(order) == "FILLED"
    # The retried submission (the broker activity asks for the status first) finds it; reports go out once.
    status = await v.venue.status(order)
    assert status is not None and status.status is OrderStatus.FILLED
    ack = await v.venue.submit(submit(order))
    assert not ack.accepted and "DUPLICATE" in (ack.reason or "")
    assert kinds_of(v.emitted, order) == ["ACCEPTED", "FILL"]
    assert list(v.journal.duplicates.values()) == [order] and v.venue.duplicate_submits == 1
    await v.assert_agrees()


async def test_cancel_whose_journal_write_fails_leaves_the_order_working_everywhere(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, type="LIMIT", price="95.00"))
    v.journal.fail_before_commit = 1
    await raises_unavailable(
        lambda: v.venue.cancel(CancelOrder(cl_ord_id=order, symbol="AAPL", side=OrderSide.BUY, qty=D(100)))
    )
    assert v.journal.status(order) == "ACCEPTED" and kinds_of(v.emitted, order) == ["ACCEPTED"]
    assert (await v.restarted_book()) == v.journal.orders
    # A retry of the cancel (the activity asks for the status first) sees the cancel, journaled by then.
    status = await v.venue.status(order)
    assert status is not None and status.status is OrderStatus.CANCELED
    assert v.journal.status(order) == "CANCELED"
    assert kinds_of(v.emitted, order) == ["ACCEPTED", "CANCELED"]
    await v.assert_agrees()


async def test_replace_whose_journal_write_fails_is_answered_only_once_journaled(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, type="LIMIT", price="95.00"))
    v.journal.fail_before_commit = 1
    replace = ReplaceOrder(
        cl_ord_id=f"{order}.1",
        orig_cl_ord_id=order,
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(200),
        price=D("96.00"),
    )
    await raises_unavailable(lambda: v.venue.replace(replace))
    assert v.journal.orders[next(iter(v.journal.orders))]["qty"] == "100"
    ack = await v.venue.replace(replace)  # a plain resend: the replace already happened, so this id is taken
    assert not ack.accepted
    status = await v.venue.status(f"{order}.1")
    assert status is not None and status.qty == D(200) and status.price == D("96.00")
    assert kinds_of(v.emitted, order) == ["ACCEPTED", "REPLACED", "REPLACE_REJECTED"]
    await v.assert_agrees()


async def test_feed_step_whose_journal_write_fails_keeps_its_fill_and_delivers_it_once(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, type="LIMIT", price="99.00"))
    v.journal.fail_before_commit = 1
    await raises_unavailable(lambda: v.venue.set_mid("AAPL", D("98.99")))  # the ask reaches the limit
    assert v.journal.status(order) == "ACCEPTED" and kinds_of(v.emitted, order) == ["ACCEPTED"]
    # The next step saves the kept fill first and emits it, exactly once, at the price it was matched at.
    await v.venue.step()
    fills = [r for r in v.emitted if r.kind is ReportKind.FILL]
    assert [(r.cl_ord_id, r.last_qty, r.last_price) for r in fills] == [(order, D(100), D("99.00"))]
    assert v.journal.status(order) == "FILLED"
    await v.venue.step()
    assert len([r for r in v.emitted if r.kind is ReportKind.FILL]) == 1
    await v.assert_agrees()


async def test_steps_while_the_journal_is_down_neither_pile_up_nor_reveal_anything(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, qty="1200"))  # 500 now, the rest over two more steps
    v.journal.fail_before_commit = 7
    for _ in range(5):
        await raises_unavailable(v.venue.step)
    await raises_unavailable(v.venue.open_orders)
    await raises_unavailable(lambda: v.venue.fills_since(v.emitted[0].transact_at.replace(year=2000)))
    await v.venue.step()
    await v.venue.step()
    fills = [r.last_qty for r in v.emitted if r.kind is ReportKind.FILL]
    assert fills == [D(500), D(500), D(200)]
    await v.assert_agrees()


async def test_an_engine_failure_halfway_rebuilds_the_book_from_the_journal(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, type="LIMIT", price="95.00"))
    real_step = v.venue.engine.step

    def broken_step() -> MatchResult:
        sim = v.venue.engine.find(order)
        assert sim is not None
        sim.status = OrderStatus.CANCELED  # a change the engine never reported
        raise ArithmeticError("injected")

    v.venue.engine.step = broken_step  # type: ignore[method-assign]
    with pytest.raises(ArithmeticError):
        await v.venue.step()
    v.venue.engine.step = real_step  # type: ignore[method-assign]
    status = await v.venue.status(order)
    assert status is not None and status.status is OrderStatus.ACCEPTED
    await v.assert_agrees()


async def test_a_rebuild_that_finds_the_journal_down_answers_nothing_until_it_can(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order, type="LIMIT", price="95.00"))

    def broken_step() -> MatchResult:
        raise ArithmeticError("injected")

    real_step = v.venue.engine.step
    v.venue.engine.step = broken_step  # type: ignore[method-assign]
    with pytest.raises(ArithmeticError):
        await v.venue.step()
    v.venue.engine.step = real_step  # type: ignore[method-assign]
    v.journal.fail_loads = 1
    await raises_unavailable(lambda: v.venue.status(order))
    status = await v.venue.status(order)
    assert status is not None and status.status is OrderStatus.ACCEPTED
    await v.assert_agrees()


async def test_reports_pending_at_a_restart_are_emitted_once(v: Venue) -> None:
    order = cid()
    await v.venue.submit(submit(order))
    await v.venue.mark_delivered([v.emitted[0].exec_id])
    second = Venue.__new__(Venue)
    second.journal, second.emitted = v.journal, []
    second.venue = second._build()
    second.emitted.extend(await second.venue.start())
    assert [r.kind.value for r in second.emitted] == ["FILL"]
    await second.venue.step()
    assert [r.kind.value for r in second.emitted] == ["FILL"]


async def test_front_ends_read_orders_only_as_journaled(v: Venue) -> None:
    # ``order()`` saves what is unsaved first and answers nothing the journal lacks; ``recorded()`` refuses
    # while something is unsaved (what the local FIX venue reads orders through).
    order = cid()
    v.journal.fail_before_commit = 1
    await raises_unavailable(lambda: v.venue.submit(submit(order, type="LIMIT", price="95.00")))
    assert v.venue.engine.find(order) is not None and v.journal.status(order) is None  # applied, unsaved
    with pytest.raises(BrokerUnavailable):
        v.venue.recorded(order)
    v.journal.fail_before_commit = 1
    await raises_unavailable(lambda: v.venue.order(order))
    seen = await v.venue.order(order)
    assert seen is not None and seen.status is OrderStatus.ACCEPTED and v.journal.status(order) == "ACCEPTED"
    seen.status = OrderStatus.CANCELED  # a copy: the venue's book is not touched through it
    recorded = v.venue.recorded(order)
    assert recorded is not None and recorded.status is OrderStatus.ACCEPTED
    assert await v.venue.order("EXNOSUCHORDER") is None
    await v.assert_agrees()
