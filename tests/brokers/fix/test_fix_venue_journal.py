"""The local FIX venue answers from the simulated venue's journal, and does not acknowledge what it cannot journal.

The FIX venue is a front end of ``SimVenue``, whose journal is its record of truth: every answer it gives
over FIX (an order it does not know, a duplicate id, a status) must agree with that journal, and a request the
venue cannot journal must not be taken at the session level (the counterparty asks again). A ``MemoryJournal``
stands in for Postgres and fails on demand.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import CancelOrder, OrderSide, OrderStatus, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from sim.matching import MatchResult
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, eventually, running_pair
from tests.sim.memory_journal import MemoryJournal

D = Decimal

PairFactory = Callable[..., AbstractAsyncContextManager[FixPair]]


@pytest.fixture
def journal() -> MemoryJournal:
    return MemoryJournal()


@pytest.fixture
def pair_factory(
    tmp_path: Path,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    reports: ReportCollector,
    journal: MemoryJournal,
) -> PairFactory:
    def make(begin_string: str = "FIX.4.4", **options: Any) -> Any:
        return running_pair(
            tmp_path / uuid.uuid4().hex[:6],
            pool,
            instruments,
            sink=reports,
            begin_string=begin_string,
            venue_journal=journal,
            request_timeout_seconds=3,
            **options,
        )

    return make


def _resting_buy(qty: str = "100") -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account="acc-1",
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=D(qty),
        price=D("150.00"),
    )


def _cancel(order: SubmitOrder) -> CancelOrder:
    return CancelOrder(
        cl_ord_id=order.cl_ord_id,
        symbol=order.symbol,
        side=order.side,
        qty=order.qty,
        reason="desk request",
    )


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_a_cancel_is_answered_from_the_journal_not_from_an_engine_that_lost_the_order(
    pair_factory: PairFactory, journal: MemoryJournal, begin_string: str
) -> None:
    # The engine fails halfway through a step after dropping a resting order from its book (a change it never
    # reported or journaled); the journal still has the order working. A cancel over FIX must find it there.
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _resting_buy()
        assert (await pair.broker.submit_order(order)).accepted
        sim = pair.venue.venue
        real_step = sim.engine.step

        def broken_step() -> MatchResult:
            lost = sim.engine.find(order.cl_ord_id)
            assert lost is not None
            del sim.engine._by_cl_ord_id[order.cl_ord_id]
            del sim.engine._orders[lost.venue_order_id]
            raise ArithmeticError("injected halfway through a step")

        sim.engine.step = broken_step  # type: ignore[method-assign]
        with pytest.raises(ArithmeticError):
            await sim.step()
        sim.engine.step = real_step  # type: ignore[method-assign]
        assert journal.status(order.cl_ord_id) == "ACCEPTED"

        ack = await pair.broker.cancel_order(_cancel(order))
        assert ack.accepted, f"the venue answered from its engine, not its journal: {ack.reason}"
        assert journal.status(order.cl_ord_id) == "CANCELED"
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.CANCELED


async def test_a_request_the_venue_cannot_journal_is_not_acknowledged(
    pair_factory: PairFactory, journal: MemoryJournal, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        logons = pair.venue.connector.logons
        journal.fail_before_commit = 10**6  # the journal is down
        order = _resting_buy()
        with pytest.raises(BrokerUnavailable):  # no answer: an unknown outcome, never a rejection
            await pair.broker.submit_order(order)
        # The venue left the NewOrderSingle unprocessed (its sequence number not taken; the session dropped),
        # and nothing about the order reached the initiator while it could not be journaled.
        await eventually(lambda: pair.venue.connector.unprocessed >= 1)
        assert pair.venue.stats.unjournaled >= 1
        assert reports.of(order.cl_ord_id) == []
        assert journal.status(order.cl_ord_id) is None

        journal.fail_before_commit = 0  # back: the session comes back, and the venue's answers agree
        await eventually(lambda: pair.venue.connector.logons > logons and pair.broker.logged_on, timeout=20)
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED
        assert journal.status(order.cl_ord_id) == "ACCEPTED"
        await reports.wait_for(lambda _: ReportKind.ACCEPTED in [r.kind for r in reports.of(order.cl_ord_id)])
        assert not pair.venue.venue.unsaved
