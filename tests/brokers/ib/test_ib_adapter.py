"""IB's traps, each against the local TWS venue with the real ib_async client: ids after a nextValidId rollback,
repeated orderStatus, a "Cancelled" that is a reject, a refused modification, fills while disconnected, 1100/1102."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.ib.execution import IBBroker
from core.domain import (
    CancelOrder,
    Instrument,
    OrderSide,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)
from core.errors import BrokerUnavailable
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue
from tests.brokers.contract import ReportCollector
from tests.brokers.ib.kit import IBPair, eventually

D = Decimal


def _order(
    inst: Instrument, *, qty: Decimal, type: OrderType = OrderType.MARKET, price: Decimal | None = None
) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
        account=LOCAL_IB_ACCOUNT,
        symbol=inst.symbol,
        side=OrderSide.BUY,
        type=type,
        time_in_force=TimeInForce.GTC,
        qty=qty,
        price=price,
    )


async def _reconnected(pair: IBPair, before: int) -> None:
    await eventually(lambda: pair.broker.connections > before and pair.broker.caught_up.is_set(), timeout=15)


async def test_a_rolled_back_next_valid_id_never_reuses_an_id(
    broker: IBBroker, ib_pair: IBPair, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    first = _order(inst, qty=inst.min_qty)
    assert (await broker.submit_order(first)).accepted
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(first.cl_ord_id)))
    used = (await broker.store.order(first.cl_ord_id)).ib_order_id  # type: ignore[union-attr]
    # The Gateway restarts overnight and forgets its ids: nextValidId says 1.
    market.faults.next_valid_id = 1
    before = broker.connections
    market.drop_all()
    await _reconnected(ib_pair, before)
    second = _order(inst, qty=inst.min_qty)
    ack = await broker.submit_order(second)
    assert ack.accepted, ack.reason  # id 1 would be refused by IB (103 duplicate order id)
    placed = (await broker.store.order(second.cl_ord_id)).ib_order_id  # type: ignore[union-attr]
    assert placed > used
    assert await broker.store.last_order_id(broker.session) >= placed


async def test_repeated_order_status_books_each_fact_once(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    market.faults.repeat_status = 3
    order = _order(
        inst, qty=inst.display_qty * 2, type=OrderType.LIMIT, price=inst.round_price(inst.initial_price * D("1.01"))
    )
    assert (await broker.submit_order(order)).accepted
    await market.step()
    await reports.wait_for(
        lambda _: sum(r.last_qty for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL) == order.qty
    )
    await broker.get_order_status(order.cl_ord_id)  # a lookup sees every status again
    mine = reports.of(order.cl_ord_id)
    assert [r.kind for r in mine].count(ReportKind.ACCEPTED) == 1
    fills = [r for r in mine if r.kind is ReportKind.FILL]
    assert len(fills) == 2 and len({f.exec_id for f in fills}) == 2
    assert all(f.fee > 0 for f in fills)  # the commission reports, booked as fees
    assert fills[-1].cum_qty == order.qty


async def test_a_cancelled_that_follows_a_reject_error_is_a_rejection(
    broker: IBBroker, ib_pair: IBPair, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    order = _order(inst, qty=inst.max_qty + inst.lot_step)  # IB: error 201, then orderStatus "Cancelled"
    ack = await broker.submit_order(order)
    assert not ack.accepted and ack.reason and "201" in ack.reason
    await reports.wait_for(lambda _: any(r.kind is ReportKind.REJECTED for r in reports.of(order.cl_ord_id)))
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.REJECTED
    assert not [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.CANCELED]
    # A restarted adapter, which never saw the error event, still reads it as a reject (completedStatus).
    await ib_pair.restart()
    status = await ib_pair.broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.REJECTED


async def test_a_refused_modification_leaves_the_order_working(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    price = inst.round_price(inst.initial_price * D("0.9"))
    order = _order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=price)
    assert (await broker.submit_order(order)).accepted
    refused = await broker.replace_order(
        ReplaceOrder(
            orig_cl_ord_id=order.cl_ord_id,
            cl_ord_id=f"{order.cl_ord_id}.1",
            symbol=inst.symbol,
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            qty=inst.max_qty + inst.lot_step,  # refused by IB with an error event (ib_async marks it Cancelled)
            price=price,
        )
    )
    assert not refused.accepted and refused.reason
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.ACCEPTED and status.qty == order.qty
    assert not [r for r in reports.of(order.cl_ord_id) if r.kind in (ReportKind.CANCELED, ReportKind.REJECTED)]
    cancel = CancelOrder(cl_ord_id=order.cl_ord_id, symbol=inst.symbol, side=order.side, qty=order.qty)
    assert (await broker.cancel_order(cancel)).accepted


async def test_fills_while_disconnected_are_booked_once_after_the_reconnect(
    broker: IBBroker, ib_pair: IBPair, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    price = inst.round_price(inst.initial_price * D("0.99"))
    order = _order(inst, qty=inst.display_qty * 2, type=OrderType.LIMIT, price=price)
    assert (await broker.submit_order(order)).accepted
    before = broker.connections
    market.accepting = False  # the nightly reset: the socket drops and stays down a while
    market.drop_all()
    await eventually(lambda: not broker.caught_up.is_set())
    await market.set_mid(inst.symbol, price - inst.tick_size * 5)  # fills while nobody listens
    await market.step()
    assert not [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
    market.accepting = True
    await _reconnected(ib_pair, before)
    await reports.wait_for(
        lambda _: sum(r.last_qty for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL) == order.qty
    )
    # Another reconnect resyncs the same executions: nothing is booked twice.
    count = len(reports.of(order.cl_ord_id))
    before = ib_pair.broker.connections
    market.drop_all()
    await _reconnected(ib_pair, before)
    status = await ib_pair.broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED and status.cum_qty == order.qty
    assert len(reports.of(order.cl_ord_id)) == count
    await market.set_mid(inst.symbol, inst.initial_price)


async def test_connectivity_lost_refuses_new_orders_until_restored(
    broker: IBBroker, pool: AsyncConnectionPool, market: IBVenue, contract_instrument: Instrument
) -> None:
    async def logged_on() -> bool:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT logged_on FROM broker_sessions WHERE broker = %s", (broker.name,))
            row = await cur.fetchone()
            return bool(row and row["logged_on"])

    await eventually(logged_on)
    market.connectivity(1100)
    await eventually(lambda: not broker.caught_up.is_set() or not broker._ready.is_set())
    order = _order(contract_instrument, qty=contract_instrument.min_qty)
    try:
        await broker.submit_order(order)
        raise AssertionError("an order was sent while TWS had no connection to IB")
    except BrokerUnavailable:
        pass
    await eventually(lambda: _not(logged_on))
    market.connectivity(1102)
    await eventually(logged_on)
    assert (await broker.submit_order(order)).accepted


async def _not(check: object) -> bool:
    return not await check()  # type: ignore[operator]


async def test_concurrent_submissions_reach_tws_in_the_order_of_their_ids(
    broker: IBBroker, market: IBVenue, contract_instrument: Instrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TWS refuses an id at or below one it has seen from the client (103). The first submission takes its id, then
    # its record's write is slow (a loaded Postgres); the second takes the next id meanwhile. Ids must still reach
    # TWS in order, or the first is refused as a duplicate (found under load in make test).
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    first = _order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=inst.initial_price * D("0.9"))
    second = _order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=inst.initial_price * D("0.9"))
    save = broker.store.save
    slowed: list[str] = []

    async def slow_first_save(record: Any) -> None:
        if record.cl_ord_id == first.cl_ord_id and not slowed:
            slowed.append(record.cl_ord_id)
            await asyncio.sleep(0.3)
        await save(record)

    monkeypatch.setattr(broker.store, "save", slow_first_save)
    first_sent = asyncio.create_task(broker.submit_order(first))
    await eventually(lambda: bool(slowed))
    acks = [await broker.submit_order(second), await first_sent]
    assert slowed == [first.cl_ord_id]
    assert all(ack.accepted for ack in acks), [ack.reason for ack in acks]
    ids = [(await broker.store.order(o.cl_ord_id)).ib_order_id for o in (first, second)]  # type: ignore[union-attr]
    assert ids[0] < ids[1]
    for order in (first, second):
        await broker.cancel_order(
            CancelOrder(cl_ord_id=order.cl_ord_id, symbol=order.symbol, side=order.side, qty=order.qty)
        )
