"""The FIX adapter against the local FIX venue over real QuickFIX sessions: order types, rejects, and the
session's failure modes (drops, lost answers, lost orders, restarts, counterparties that gap-fill)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from activities.broker import BrokerActivities, SubmitInput
from brokers.base import ReportSink
from brokers.fix.execution import FixBroker
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
from core.errors import BrokerUnavailable, ConfigError
from core.instruments import InstrumentCatalog
from devstack.venues.fix.venue import FixVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import FixPair, Forwarder, eventually, running_pair

D = Decimal


def _order(
    *,
    qty: str = "100",
    type: OrderType = OrderType.MARKET,
    price: str | None = None,
    stop: str | None = None,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "AAPL",
    side: OrderSide = OrderSide.BUY,
    **extra: object,
) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account="acc-1",
        symbol=symbol,
        side=side,
        type=type,
        time_in_force=tif,
        qty=D(qty),
        price=None if price is None else D(price),
        stop_price=None if stop is None else D(stop),
        **extra,  # type: ignore[arg-type]  # peg_type, peg_offset, expire_at
    )


def _kinds(reports: ReportCollector, cid: str) -> list[ReportKind]:
    return [r.kind for r in reports.of(cid)]


def _fills(reports: ReportCollector, cid: str) -> list[tuple[Decimal, Decimal | None]]:
    return [(r.last_qty, r.last_price) for r in reports.of(cid) if r.kind is ReportKind.FILL]


PairFactory = Callable[..., AbstractAsyncContextManager[FixPair]]


@pytest.fixture
def pair_factory(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> PairFactory:
    """``async with pair_factory(begin_string, sink=..., **options) as pair``: a venue and an adapter."""

    def make(begin_string: str = "FIX.4.4", *, sink: ReportSink | None = None, **options: Any) -> Any:
        return running_pair(
            tmp_path / uuid.uuid4().hex[:6],
            pool,
            instruments,
            sink=sink or reports,
            begin_string=begin_string,
            **options,
        )

    return make


# ------------------------------------------------------------------------------------------ order types


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_pegged_order_goes_out_as_ordtype_p_with_execinst_and_offset(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))  # bid 189.99, ask 190.01
        order = _order(type=OrderType.PEGGED, peg_type=PegType.MIDPOINT, peg_offset=D("0.01"))
        ack = await pair.broker.submit_order(order)
        assert ack.accepted, ack.reason
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        assert _fills(reports, order.cl_ord_id) == [(D(100), D("190.01"))]  # mid + offset
        at_venue = pair.venue.venue.engine.find(order.cl_ord_id)
        assert at_venue is not None
        assert at_venue.type is OrderType.PEGGED
        assert (at_venue.peg_type, at_venue.peg_offset) == (PegType.MIDPOINT, D("0.01"))


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_ioc_fills_what_the_touch_shows_and_the_rest_is_canceled(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(qty="700", tif=TimeInForce.IOC)  # AAPL shows 500 at the touch
        assert (await pair.broker.submit_order(order)).accepted
        await reports.wait_for(lambda _: ReportKind.CANCELED in _kinds(reports, order.cl_ord_id))
        assert _kinds(reports, order.cl_ord_id) == [ReportKind.ACCEPTED, ReportKind.FILL, ReportKind.CANCELED]
        assert _fills(reports, order.cl_ord_id) == [(D(500), D("190.01"))]
        canceled = reports.of(order.cl_ord_id)[-1]
        assert canceled.cum_qty == D(500) and "IOC" in (canceled.reason or "")
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.CANCELED and status.cum_qty == D(500)


async def test_fok_that_cannot_fill_in_full_is_canceled_without_a_fill(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(qty="700", tif=TimeInForce.FOK)
        assert (await pair.broker.submit_order(order)).accepted
        await reports.wait_for(lambda _: ReportKind.CANCELED in _kinds(reports, order.cl_ord_id))
        assert _kinds(reports, order.cl_ord_id) == [ReportKind.ACCEPTED, ReportKind.CANCELED]
        small = _order(qty="300", tif=TimeInForce.FOK)
        assert (await pair.broker.submit_order(small)).accepted
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, small.cl_ord_id))
        assert _fills(reports, small.cl_ord_id) == [(D(300), D("190.01"))]


async def test_gtd_order_carries_its_expire_time_and_expires(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        expire_at = (datetime.now(UTC) + timedelta(milliseconds=400)).replace(microsecond=0) + timedelta(seconds=1)
        order = _order(type=OrderType.LIMIT, price="180.00", tif=TimeInForce.GTD, expire_at=expire_at)
        assert (await pair.broker.submit_order(order)).accepted
        at_venue = pair.venue.venue.engine.find(order.cl_ord_id)
        assert at_venue is not None and at_venue.expire_at == expire_at
        await asyncio.sleep(max(0.0, (expire_at - datetime.now(UTC)).total_seconds()) + 0.05)
        await pair.venue.step()
        await reports.wait_for(lambda _: ReportKind.EXPIRED in _kinds(reports, order.cl_ord_id))
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.EXPIRED


@pytest.mark.parametrize("begin_string", ["FIX.4.4", "FIXT.1.1"])
async def test_stop_limit_triggers_and_fills(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(type=OrderType.STOP_LIMIT, stop="191.00", price="191.50")
        assert (await pair.broker.submit_order(order)).accepted
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED
        assert (status.price, status.stop_price) == (D("191.50"), D("191.00"))
        await pair.venue.set_mid("AAPL", D("191.00"))  # ask 191.01 reaches the stop
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        assert _fills(reports, order.cl_ord_id) == [(D(100), D("191.01"))]
        # Only FIX 5.0 has an ExecType for "triggered" (L); in 4.x the fill says it.
        assert (ReportKind.TRIGGERED in _kinds(reports, order.cl_ord_id)) is (begin_string == "FIXT.1.1")


# ------------------------------------------------------------------------------------------ rejects


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_unknown_symbol_is_rejected_with_the_venues_reason(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        order = _order(symbol="NOPE")
        ack = await pair.broker.submit_order(order)
        assert not ack.accepted and "UNKNOWN_SYMBOL" in (ack.reason or "")
        await reports.wait_for(lambda _: ReportKind.REJECTED in _kinds(reports, order.cl_ord_id))
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.REJECTED
        assert [r.kind for r in status.reports] == [ReportKind.REJECTED]


async def test_cancel_of_a_filled_order_is_rejected_as_too_late(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order()
        assert (await pair.broker.submit_order(order)).accepted
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        ack = await pair.broker.cancel_order(
            CancelOrder(cl_ord_id=order.cl_ord_id, symbol="AAPL", side=OrderSide.BUY, qty=order.qty)
        )
        assert not ack.accepted and not ack.not_found and "TOO_LATE" in (ack.reason or "")
        assert [r.kind for r in ack.reports] == [ReportKind.CANCEL_REJECTED]
        await reports.wait_for(lambda _: ReportKind.CANCEL_REJECTED in _kinds(reports, order.cl_ord_id))
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED


async def test_replace_below_the_filled_quantity_is_rejected_and_the_order_keeps_working(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(qty="1200", type=OrderType.LIMIT, price="191.00")
        assert (await pair.broker.submit_order(order)).accepted
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        ack = await pair.broker.replace_order(
            ReplaceOrder(
                orig_cl_ord_id=order.cl_ord_id,
                cl_ord_id=f"{order.cl_ord_id}.1",
                symbol="AAPL",
                side=OrderSide.BUY,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                qty=D(400),
                price=D("191.00"),
            )
        )
        assert not ack.accepted and "INCORRECT_QUANTITY" in (ack.reason or "")
        await reports.wait_for(lambda _: ReportKind.REPLACE_REJECTED in _kinds(reports, order.cl_ord_id))
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.PARTIALLY_FILLED
        assert status.cl_ord_id == order.cl_ord_id and status.qty == D(1200)
        # A successful replace moves the ClOrdID chain on (11 = new, 41 = old).
        ack = await pair.broker.replace_order(
            ReplaceOrder(
                orig_cl_ord_id=order.cl_ord_id,
                cl_ord_id=f"{order.cl_ord_id}.1",
                symbol="AAPL",
                side=OrderSide.BUY,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                qty=D(600),
                price=D("191.00"),
            )
        )
        assert ack.accepted and ack.cl_ord_id == f"{order.cl_ord_id}.1"
        replaced = ack.reports[0]
        assert (replaced.kind, replaced.new_qty, replaced.cum_qty) == (ReportKind.REPLACED, D(600), D(500))
        await pair.venue.step()
        await reports.wait_for(lambda _: sum(q for q, _ in _fills(reports, order.cl_ord_id)) == D(600))
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert status.cl_ord_id == f"{order.cl_ord_id}.1"


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_duplicate_client_order_id_reject_does_not_touch_the_live_order(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string) as pair:
        await pair.venue.set_mid("AAPL", D("190.00"))
        order = _order(type=OrderType.LIMIT, price="189.00")
        assert (await pair.broker.submit_order(order)).accepted
        again = await pair.broker.submit_order(order)
        assert not again.accepted and "DUPLICATE" in (again.reason or "") and again.reports == []
        await pair.venue.set_mid("AAPL", D("188.00"))
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        assert _kinds(reports, order.cl_ord_id) == [ReportKind.ACCEPTED, ReportKind.FILL]
        status = await pair.broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert ReportKind.REJECTED not in [r.kind for r in status.reports]


# ------------------------------------------------------------------------------------------ session failures


@pytest.mark.parametrize("begin_string", ["FIX.4.2", "FIX.4.4"])
async def test_fills_while_the_connection_is_down_arrive_once_by_resend_after_reconnect(
    pair_factory: PairFactory, reports: ReportCollector, begin_string: str
) -> None:
    async with pair_factory(begin_string, proxy=True) as pair:
        venue, broker, network = pair.venue, pair.broker, pair.proxy
        await venue.set_mid("AAPL", D("190.00"))
        big = _order(qty="1200", type=OrderType.LIMIT, price="185.00")
        small = _order(qty="50", type=OrderType.LIMIT, price="185.00")
        for o in (big, small):
            assert (await broker.submit_order(o)).accepted
        venue_sent_before, _ = await venue.sequence_numbers()
        broker_sent_before, _ = await broker.sequence_numbers()

        network.cut()
        await eventually(lambda: not broker.logged_on and not venue.logged_on)
        await venue.set_mid("AAPL", D("184.00"))  # both fill (big: 500 of 1200)
        await venue.step()  # big: 1000
        await venue.step()  # big: 1200
        await eventually(lambda: network.refused >= 1)  # the adapter keeps trying
        assert not [r for r in reports.reports if r.kind is ReportKind.FILL]

        network.restore()
        await broker.wait_logged_on(15)
        await asyncio.wait_for(broker.resynced.wait(), 15)
        await reports.wait_for(
            lambda _: (
                sum(q for q, _ in _fills(reports, big.cl_ord_id)) == D(1200) and _fills(reports, small.cl_ord_id) != []
            )
        )
        assert _fills(reports, big.cl_ord_id) == [(D(500), D("184.01"))] * 2 + [(D(200), D("184.01"))]
        assert _fills(reports, small.cl_ord_id) == [(D(50), D("184.01"))]
        exec_ids = [r.exec_id for r in reports.reports]
        assert len(exec_ids) == len(set(exec_ids))
        assert broker.synthesized == 0  # every fill came as the venue's own report, resent after the gap
        # Sequence numbers went on from where they were, on both sides, and each side expects exactly what the
        # other sends next (a logon cut off by the outage may still be gap-filled, so allow it a moment).
        await eventually(lambda: _in_step(venue, broker))
        venue_next, _ = await venue.sequence_numbers()
        broker_next, _ = await broker.sequence_numbers()
        assert venue_next > venue_sent_before + 4 and broker_next > broker_sent_before
        for o in (big, small):
            status = await broker.get_order_status(o.cl_ord_id)
            assert status is not None and status.status is OrderStatus.FILLED
            assert sum(r.last_qty for r in status.fills) == o.qty


async def test_fills_while_the_venue_refuses_logons_still_arrive_once(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    # A refused logon is answered with a Logout whose MsgSeqNum is past the gap; QuickFIX counts it and so never
    # asks again for the report just before it. The status requests after the next logon make up for it.
    async with pair_factory() as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = _order(qty="1200", type=OrderType.LIMIT, price="185.00")
        assert (await broker.submit_order(order)).accepted
        venue.faults.refuse_logons = True
        await venue.drop()
        await eventually(lambda: not broker.logged_on)
        await venue.set_mid("AAPL", D("184.00"))
        await venue.step()
        await venue.step()
        await eventually(lambda: venue.stats.refused_logons >= 1)
        venue.faults.refuse_logons = False
        await broker.wait_logged_on(15)
        await asyncio.wait_for(broker.resynced.wait(), 15)
        await reports.wait_for(lambda _: sum(q for q, _ in _fills(reports, order.cl_ord_id)) == D(1200))
        fills = [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
        assert len({f.exec_id for f in fills}) == len(fills)
        assert all(f.last_price == D("184.01") for f in fills)
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert sum(r.last_qty for r in status.fills) == D(1200)


async def test_counterparty_that_gap_fills_is_resynchronised_from_order_status(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    # The venue keeps no messages (PersistMessages=N): what it sent while the session was down is gap-filled
    # and lost. The status requests after logon still bring the fill and the expiry to their orders.
    async with pair_factory(venue_options={"persist_messages": False}) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        fills = _order(qty="1200", type=OrderType.LIMIT, price="185.00")
        expires = _order(
            qty="10",
            type=OrderType.LIMIT,
            price="170.00",
            tif=TimeInForce.GTD,
            expire_at=datetime.now(UTC) + timedelta(milliseconds=200),
        )
        for o in (fills, expires):
            assert (await broker.submit_order(o)).accepted
        venue.faults.refuse_logons = True
        await venue.drop()
        await eventually(lambda: not broker.logged_on)
        await asyncio.sleep(0.25)
        await venue.set_mid("AAPL", D("184.00"))  # 500 of 1200 fill, the GTD order expires
        await venue.step()  # 1000 of 1200
        venue.faults.refuse_logons = False
        await broker.wait_logged_on(15)
        await asyncio.wait_for(broker.resynced.wait(), 15)
        await reports.wait_for(
            lambda _: (
                ReportKind.EXPIRED in _kinds(reports, expires.cl_ord_id)
                and sum(q for q, _ in _fills(reports, fills.cl_ord_id)) == D(1000)
            )
        )
        [synth] = [r for r in reports.of(fills.cl_ord_id) if r.kind is ReportKind.FILL]
        assert (synth.last_qty, synth.last_price, synth.cum_qty) == (D(1000), D("184.01"), D(1000))
        assert ":cum:" in synth.exec_id
        [expired] = [r for r in reports.of(expires.cl_ord_id) if r.kind is ReportKind.EXPIRED]
        assert expired.exec_id == f"{expires.cl_ord_id}:status:EXPIRED"
        assert broker.synthesized == 2
        # Should the venue's own report of a counted fill still turn up, it is not counted twice.
        pair.venue.connector.send_nowait(
            "8",
            [
                (37, synth.broker_order_id),
                (11, fills.cl_ord_id),
                (17, "late-fill"),
                (150, "F"),
                (39, "1"),
                (55, "AAPL"),
                (54, "1"),
                (38, "1200"),
                (32, "500"),
                (31, "184.01"),
                (151, "700"),
                (14, "500"),
                (6, "184.01"),
                (60, "20260101-00:00:00.000"),
            ],
        )
        marker = _order(symbol="NOPE")  # an answer that certainly comes after the late report
        assert not (await broker.submit_order(marker)).accepted
        assert "late-fill" not in [r.exec_id for r in reports.reports]
        # Later reports arrive as usual and continue the count.
        await venue.step()
        await reports.wait_for(lambda _: sum(q for q, _ in _fills(reports, fills.cl_ord_id)) == D(1200))
        status = await broker.get_order_status(fills.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert sum(r.last_qty for r in status.fills) == D(1200)


async def test_submission_whose_answer_is_lost_in_a_drop_is_resolved_by_the_venues_reports(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        venue.faults.drop_before_answer = 1
        order = _order()
        with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
            await broker.submit_order(order)
        # The venue executed it; its reports come by resend once the adapter is back.
        await broker.wait_logged_on(15)
        await reports.wait_for(lambda _: ReportKind.FILL in _kinds(reports, order.cl_ord_id))
        assert _kinds(reports, order.cl_ord_id) == [ReportKind.ACCEPTED, ReportKind.FILL]
        # A retried submission asks first, finds the order, and sends nothing.
        ack = await ActivityEnvironment().run(
            BrokerActivities({"fix": broker}).submit_order, SubmitInput(broker="fix", order=order, check_first=True)
        )
        assert ack.accepted and ack.broker_order_id
        assert venue.stats.received["D"] == 1


async def test_lost_order_is_sent_again_under_the_same_id_only_after_the_venue_denies_knowing_it(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory(request_timeout_seconds=1) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        venue.faults.lose_orders = 1
        order = _order(type=OrderType.LIMIT, price="180.00")
        with pytest.raises(BrokerUnavailable, match="outcome is unknown"):
            await broker.submit_order(order)
        submit = BrokerActivities({"fix": broker}).submit_order
        retry = SubmitInput(broker="fix", order=order, check_first=True)
        ack = await ActivityEnvironment().run(submit, retry)  # status: unknown -> sent again, same ClOrdID
        assert ack.accepted
        assert venue.stats.received["D"] == 2
        ack = await ActivityEnvironment().run(submit, retry)  # status: known -> not sent
        assert ack.accepted and venue.stats.received["D"] == 2
        assert [o.cl_ord_id for o in venue.venue.engine.all_orders()] == [order.cl_ord_id]


async def test_messages_stored_while_down_are_gap_filled_never_resent(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory(proxy=True) as pair:
        venue, broker = pair.venue, pair.broker
        assert pair.proxy is not None
        pair.proxy.cut()
        await eventually(lambda: not broker.logged_on)
        with pytest.raises(BrokerUnavailable, match="not logged on"):
            await broker.submit_order(_order())
        # Straight to QuickFIX, past the adapter's guard: the order is stored under the next sequence number.
        stale = _order()
        assert await broker.connector.send(
            "D",
            [
                (11, stale.cl_ord_id),
                (21, "1"),
                (55, "AAPL"),
                (54, "1"),
                (60, "20260101-00:00:00.000"),
                (38, "100"),
                (40, "1"),
            ],
        )
        pair.proxy.restore()
        await broker.wait_logged_on(15)
        await asyncio.wait_for(broker.resynced.wait(), 15)
        # The venue asked for it (it saw the gap) and got a gap fill: the stale order never arrived.
        await eventually(lambda: _in_step(venue, broker))
        broker_next, _ = await broker.sequence_numbers()
        assert broker_next >= 4  # logon, the stale order, the second logon
        assert venue.stats.received.get("D", 0) == 0
        assert venue.venue.engine.find(stale.cl_ord_id) is None


async def test_restarted_adapter_resumes_the_session_and_delivers_what_it_missed(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    forward = Forwarder()
    forward.target = reports
    async with pair_factory(sink=forward) as pair:
        venue = pair.venue
        await venue.set_mid("AAPL", D("190.00"))
        working = _order(qty="800", type=OrderType.LIMIT, price="185.00")
        assert (await pair.broker.submit_order(working)).accepted
        await reports.wait_for(lambda _: _kinds(reports, working.cl_ord_id) == [ReportKind.ACCEPTED])
        sent_before, expected_before = await pair.broker.sequence_numbers()

        # A fill that reaches the adapter while its consumer is down: stored, not delivered.
        failing = _FailingSink()
        forward.target = failing
        await venue.set_mid("AAPL", D("184.00"))  # 500 of 800
        await eventually(lambda: failing.calls > 0)
        await pair.broker.close()
        await venue.step()  # the other 300 fill while the adapter is down

        forward.target = reports
        broker = await pair.restart_broker()
        sent_after, expected_after = await broker.sequence_numbers()
        assert sent_after > sent_before and expected_after > expected_before + 1  # resumed, not reset
        await reports.wait_for(lambda _: sum(q for q, _ in _fills(reports, working.cl_ord_id)) == D(800))
        assert _fills(reports, working.cl_ord_id) == [(D(500), D("184.01")), (D(300), D("184.01"))]
        status = await broker.get_order_status(working.cl_ord_id)
        assert status is not None and status.status is OrderStatus.FILLED
        assert [r.kind for r in status.reports] == [ReportKind.ACCEPTED, ReportKind.FILL, ReportKind.FILL]

        async def undelivered() -> int:
            async with pair.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM broker_reports WHERE broker = %s AND stream = %s"
                    " AND delivered_at IS NULL",
                    (broker.name, broker.config.key),
                )
                row = await cur.fetchone()
            assert row is not None
            return int(row["n"])

        await eventually(lambda: _is_zero(undelivered()))


async def _is_zero(value: object) -> bool:
    return await value == 0  # type: ignore[misc]


async def test_logon_carries_username_and_password(
    pair_factory: PairFactory, reports: ReportCollector, tmp_path: Path, pool: AsyncConnectionPool
) -> None:
    async with pair_factory(username="desk", password=SecretStr("s3cret")) as pair:
        assert pair.broker.logged_on
        wrong = pair.settings.model_copy(
            update={
                "fix": pair.settings.fix.model_copy(
                    update={"password": SecretStr("guess"), "store_dir": tmp_path / "other"}
                )
            }
        )
        await pair.broker.close()
        intruder = FixBroker.from_settings(wrong, pool=pool)
        await intruder.start(reports)
        try:
            await eventually(lambda: pair.venue.stats.refused_logons >= 1)
            assert not intruder.logged_on
        finally:
            await intruder.close()


async def test_a_second_owner_of_the_same_session_is_refused(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        twin = pair.new_broker()
        with pytest.raises(ConfigError, match="already run by another process"):
            await twin.start(reports)
        await twin.close()
        assert pair.broker.logged_on


async def test_report_for_an_unknown_client_order_id_is_delivered_not_dropped(
    pair_factory: PairFactory, reports: ReportCollector
) -> None:
    async with pair_factory() as pair:
        stray = "EX" + uuid.uuid4().hex[:16].upper()
        pair.venue.connector.send_nowait(
            "8",
            [
                (37, "VENUE-1"),
                (11, stray),
                (17, f"stray-{stray}"),
                (150, "F"),
                (39, "2"),
                (55, "AAPL"),
                (54, "1"),
                (38, "5"),
                (32, "5"),
                (31, "190.01"),
                (151, "0"),
                (14, "5"),
                (6, "190.01"),
                (60, "20260101-00:00:00.000"),
            ],
        )
        await reports.wait_for(lambda _: bool(reports.of(stray)))
        [report] = reports.of(stray)
        assert (report.kind, report.last_qty, report.exec_id) == (ReportKind.FILL, D(5), f"stray-{stray}")


async def _in_step(venue: FixVenue, broker: FixBroker) -> bool:
    """Whether each side expects the sequence number the other sends next."""
    venue_next, venue_expects = await venue.sequence_numbers()
    broker_next, broker_expects = await broker.sequence_numbers()
    return (broker_expects, venue_expects) == (venue_next, broker_next)


class _FailingSink:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, report: object) -> None:
        self.calls += 1
        raise RuntimeError("consumer unavailable")
