"""Native lists at IB, adapter and local TWS venue: a head placed with its legs as children (``parentId``, ``transmit``)
in an OCA group, each leg followed under its own ``orderRef``; the venue holds children until their parent fills,
works nothing before the transmitting order, and cancels an OCA group's other orders on a fill."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from brokers.ib.execution import IBBroker
from core.domain import (
    CancelOrder,
    Instrument,
    NativeLeg,
    NativeList,
    OrderSide,
    OrderStatus,
    OrderType,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)
from core.errors import BrokerUnavailable
from devstack.venues.ib import LOCAL_IB_ACCOUNT
from devstack.venues.ib.venue import IBVenue, IBVenueServer, VenueOrder
from tests.brokers.contract import ReportCollector
from tests.brokers.ib.kit import IBPair, eventually
from tests.brokers.ib.test_ib_venue import Raw, server  # noqa: F401 (fixture)

D = Decimal


def _cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


class Bracket:
    """A BUY entry with a SELL LIMIT take-profit and a SELL STOP stop-loss, as ``core.nativelist`` marks them."""

    def __init__(self, inst: Instrument, entry: Decimal, tp: Decimal, sl: Decimal, order_class: str = "bracket"):
        self.head_cid, self.tp_cid, self.sl_cid = _cid(), _cid(), _cid()
        common = {"account": LOCAL_IB_ACCOUNT, "symbol": inst.symbol, "time_in_force": TimeInForce.GTC}
        qty = inst.min_qty
        legs = (
            NativeLeg(role="take_profit", cl_ord_id=self.tp_cid, side=OrderSide.SELL, type=OrderType.LIMIT, price=tp),
            NativeLeg(role="stop_loss", cl_ord_id=self.sl_cid, side=OrderSide.SELL, type=OrderType.STOP, stop_price=sl),
        )
        self.head = SubmitOrder(
            cl_ord_id=self.head_cid,
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            qty=qty,
            price=entry,
            native=NativeList(order_class=order_class, legs=legs),  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )
        self.tp = SubmitOrder(
            cl_ord_id=self.tp_cid,
            side=OrderSide.SELL,
            type=OrderType.LIMIT,
            qty=qty,
            price=tp,
            native=NativeList(order_class=order_class, held_by=self.head_cid, role="take_profit"),  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )
        self.sl = SubmitOrder(
            cl_ord_id=self.sl_cid,
            side=OrderSide.SELL,
            type=OrderType.STOP,
            qty=qty,
            stop_price=sl,
            native=NativeList(order_class=order_class, held_by=self.head_cid, role="stop_loss"),  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )

    @classmethod
    def around(cls, inst: Instrument, mid: Decimal, order_class: str = "bracket") -> Bracket:
        """A resting entry 5 % under ``mid``, its take-profit 5 % over and its stop 10 % under."""
        return cls(
            inst,
            entry=inst.round_price(mid * D("0.95")),
            tp=inst.round_price(mid * D("1.05")),
            sl=inst.round_price(mid * D("0.90")),
            order_class=order_class,
        )

    def at_venue(self, venue: IBVenue) -> tuple[VenueOrder, VenueOrder, VenueOrder]:
        by_ref = {o.order_ref: o for o in venue.orders.values()}
        return by_ref[self.head_cid], by_ref[self.tp_cid], by_ref[self.sl_cid]


async def test_bracket_legs_are_children_held_until_the_entry_fills_and_a_take_profit_fill_cancels_the_stop(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    mid = inst.initial_price
    await market.set_mid(inst.symbol, mid)
    b = Bracket.around(inst, mid)
    ack = await broker.submit_order(b.head)
    assert ack.accepted, ack.reason
    head, tp, sl = b.at_venue(market)
    # IB's bracket: children of the entry, the exits one OCA group; nothing but the entry works yet.
    assert (tp.parent_id, sl.parent_id) == (head.order_id, head.order_id)
    assert tp.oca_group and tp.oca_group == sl.oca_group and not head.oca_group
    assert head.working and head.status == "Submitted"
    assert (tp.working, sl.working) == (False, False) and tp.status == sl.status == "PreSubmitted"
    assert market.sim.recorded(tp.sim_cid) is None and market.sim.recorded(sl.sim_cid) is None
    # No order follows the legs yet: their reports are held back (no stray report for a workflow not started).
    assert reports.of(b.tp_cid) == [] and reports.of(b.sl_cid) == []
    # A leg's submission places nothing: it finds the leg under its own orderRef and follows it.
    placed = len(market.orders)
    for leg in (b.tp, b.sl):
        found = await broker.submit_order(leg)
        assert found.accepted, found.reason
        assert [r.kind for r in found.reports] == [ReportKind.ACCEPTED]
    assert len(market.orders) == placed
    # The entry fills: IB activates both exits.
    await market.set_mid(inst.symbol, inst.round_price(mid * D("0.94")))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(b.head_cid)))
    await eventually(lambda: tp.working and sl.working)
    # The take-profit fills: the OCA group cancels the stop, reported Cancelled under the stop's own id.
    await market.set_mid(inst.symbol, inst.round_price(mid * D("1.06")))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(b.tp_cid)))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(b.sl_cid)))
    assert sl.status == "Cancelled" and "OCA" in sl.completed_status
    assert not [r for r in reports.of(b.sl_cid) if r.kind is ReportKind.FILL]
    status = await broker.get_order_status(b.sl_cid)
    assert status is not None and status.status is OrderStatus.CANCELED
    await market.set_mid(inst.symbol, mid)


async def test_a_canceled_entry_cancels_its_held_children(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    mid = inst.initial_price
    await market.set_mid(inst.symbol, mid)
    b = Bracket.around(inst, mid)
    assert (await broker.submit_order(b.head)).accepted
    head, tp, sl = b.at_venue(market)
    cancel = CancelOrder(cl_ord_id=b.head_cid, symbol=inst.symbol, side=OrderSide.BUY, qty=b.head.qty)
    assert (await broker.cancel_order(cancel)).accepted
    await eventually(lambda: tp.status == sl.status == "Cancelled")
    assert (tp.working, sl.working) == (False, False)
    for cid in (b.tp_cid, b.sl_cid):
        status = await broker.get_order_status(cid)
        assert status is not None and status.status is OrderStatus.CANCELED
    # The leg's own submission then finds it canceled (never sends it).
    found = await broker.submit_order(b.tp)
    assert found.accepted and ReportKind.CANCELED in [r.kind for r in found.reports]
    assert head.status == "Cancelled"


async def test_a_native_oco_is_two_orders_in_one_oca_group(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    mid = inst.initial_price
    await market.set_mid(inst.symbol, mid)
    tp_price, sl_price = inst.round_price(mid * D("1.05")), inst.round_price(mid * D("0.95"))
    head_cid, stop_cid = _cid(), _cid()
    common = {"account": LOCAL_IB_ACCOUNT, "symbol": inst.symbol, "time_in_force": TimeInForce.GTC}
    stop_leg = NativeLeg(
        role="stop_loss", cl_ord_id=stop_cid, side=OrderSide.SELL, type=OrderType.STOP, stop_price=sl_price
    )
    head = SubmitOrder(
        cl_ord_id=head_cid,
        side=OrderSide.SELL,
        type=OrderType.LIMIT,
        qty=inst.min_qty,
        price=tp_price,
        native=NativeList(order_class="oco", legs=(stop_leg,)),
        **common,  # type: ignore[arg-type]
    )
    assert (await broker.submit_order(head)).accepted
    by_ref = {o.order_ref: o for o in market.orders.values()}
    limit, stop = by_ref[head_cid], by_ref[stop_cid]
    assert limit.oca_group and limit.oca_group == stop.oca_group and not stop.parent_id
    await eventually(lambda: limit.working and stop.working)
    leg = head.model_copy(
        update={
            "cl_ord_id": stop_cid,
            "type": OrderType.STOP,
            "price": None,
            "stop_price": sl_price,
            "native": NativeList(order_class="oco", held_by=head_cid, role="stop_loss"),
        }
    )
    assert (await broker.submit_order(leg)).accepted
    await market.set_mid(inst.symbol, inst.round_price(mid * D("0.94")))  # the stop fills; the limit is canceled
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(stop_cid)))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(head_cid)))
    await market.set_mid(inst.symbol, mid)


async def test_a_leg_whose_head_was_never_placed_is_unknown_not_refused(
    broker: IBBroker, contract_instrument: Instrument
) -> None:
    b = Bracket(contract_instrument, D("100"), D("110"), D("90"))
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(b.tp)


# -- the venue over a raw socket --------------------------------------------------------------------------------


def _placed(
    order_id: int,
    *,
    action: str = "BUY",
    order_type: str = "LMT",
    lmt: str = "100",
    aux: str = "",
    ref: str = "EXREF",
    transmit: int = 1,
    parent: int = 0,
    oca: str = "",
    oca_type: int = 0,
) -> list[object]:
    """A placeOrder as ib_async writes it at version 178, up to ``ocaType``."""
    contract = [0, "AAPL", "STK", "", 0.0, "", "", "SMART", "", "USD", "", ""]
    head = [3, order_id, *contract, "", "", action, "10", order_type, lmt, aux, "GTC", oca, "", "O", 0, ref]
    head += [transmit, parent, 0, 0, 0, 0, 0, 0, 0]  # transmit, parentId, blockOrder .. hidden, sharesAllocation
    head += ["", "", "", "", "", ""]  # discretionaryAmt, goodAfterTime, goodTillDate, faGroup/Method/Percentage
    return [*head, "", "", "", "", oca_type]  # modelCode, shortSaleSlot, designatedLocation, exemptCode, ocaType


async def test_the_venue_works_nothing_before_the_transmitting_order_and_refuses_other_oca_types(
    server: IBVenueServer,  # noqa: F811
) -> None:
    venue = server.venue
    await venue.set_mid("AAPL", D("190.00"))
    c = await Raw.open(server.port)
    await c.read()
    c.send(71, 2, 61, "")
    first = int((await c.until(9))[2])
    c.send(*_placed(first, lmt="180", ref="EXPARENT", transmit=0))
    c.send(*_placed(first + 1, action="SELL", lmt="200", ref="EXTP", transmit=0, parent=first, oca="G1", oca_type=1))
    c.send(16, 1)  # reqAllOpenOrders: the untransmitted orders are not shown
    shown: list[str] = []
    while int((fields := await c.read())[0]) != 53:  # up to openOrderEnd (other tests' orders may show)
        shown += fields
    assert "EXPARENT" not in shown and "EXTP" not in shown
    parent = venue.orders[(61, first)]
    assert not parent.transmitted and not parent.working and venue.sim.recorded(parent.sim_cid) is None
    # The last child transmits the whole group: the parent works, its children wait for its fill.
    last = _placed(first + 2, action="SELL", order_type="STP", lmt="", aux="170", ref="EXSL", parent=first, oca="G1")
    c.send(*last[:-1], 1)  # ocaType 1
    await eventually(lambda: parent.status == "Submitted")
    tp, sl = venue.orders[(61, first + 1)], venue.orders[(61, first + 2)]
    assert tp.status == sl.status == "PreSubmitted" and not tp.working and not sl.working
    # ocaType 2 (reduce the others) is not served: an IB error, nothing placed.
    c.send(*_placed(first + 3, lmt="180", ref="EXO2", oca="G2", oca_type=2))
    err = await c.until(4)
    while err[2] != str(first + 3):
        err = await c.until(4)
    assert err[3] == "321" and "ocaType 2" in err[4]
    assert (61, first + 3) not in venue.orders
    # A child whose parent id is unknown is refused (201).
    c.send(*_placed(first + 4, action="SELL", lmt="200", ref="EXORPHAN", parent=first + 100))
    err = await c.until(4)
    while err[2] != str(first + 4):
        err = await c.until(4)
    assert err[3] == "201"
    c.close()


async def test_a_native_bracket_whose_placement_was_cut_off_is_placed_once_on_the_resend(
    broker: IBBroker, ib_pair: IBPair, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    mid = inst.initial_price
    await market.set_mid(inst.symbol, mid)
    b = Bracket.around(inst, mid)
    # The connection drops right after TWS took the entry (untransmitted): its legs never arrive.
    market.faults.add("drop_after", "submit")
    before = broker.connections
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(b.head)
    await eventually(lambda: ib_pair.broker.connections > before and ib_pair.broker.caught_up.is_set(), timeout=15)
    # Unknown, so the leg is not refused: looked up again later.
    with pytest.raises(BrokerUnavailable):
        await broker.submit_order(b.tp)
    # The resend finds nothing working at IB (the cut-off group was never transmitted) and places the group again.
    ack = await broker.submit_order(b.head)
    assert ack.accepted, ack.reason
    working = [o for o in market.orders.values() if o.order_ref in (b.head_cid, b.tp_cid, b.sl_cid) and o.transmitted]
    assert sorted(o.order_ref for o in working) == sorted([b.head_cid, b.tp_cid, b.sl_cid])
    assert (await broker.submit_order(b.tp)).accepted
    # A second resend is refused as a duplicate: IB has it.
    again = await broker.submit_order(b.head)
    assert not again.accepted and again.reason and "DUPLICATE" in again.reason
    cancel = CancelOrder(cl_ord_id=b.head_cid, symbol=inst.symbol, side=OrderSide.BUY, qty=b.head.qty)
    assert (await broker.cancel_order(cancel)).accepted


async def test_a_native_oto_child_has_no_oca_group_and_works_once_its_parent_fills(
    broker: IBBroker, market: IBVenue, reports: ReportCollector, contract_instrument: Instrument
) -> None:
    inst = contract_instrument
    mid = inst.initial_price
    await market.set_mid(inst.symbol, mid)
    b = Bracket.around(inst, mid, order_class="oto")
    assert b.head.native is not None
    head = b.head.model_copy(update={"native": b.head.native.model_copy(update={"legs": b.head.native.legs[:1]})})
    assert (await broker.submit_order(head)).accepted
    by_ref = {o.order_ref: o for o in market.orders.values()}
    parent, child = by_ref[b.head_cid], by_ref[b.tp_cid]
    assert b.sl_cid not in by_ref
    assert child.parent_id == parent.order_id and not child.oca_group and not parent.oca_group
    assert child.status == "PreSubmitted" and not child.working
    assert (await broker.submit_order(b.tp)).accepted
    await market.set_mid(inst.symbol, inst.round_price(mid * D("0.94")))
    await eventually(lambda: child.working and child.status == "Submitted")
    await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(b.head_cid)))
    cancel = CancelOrder(cl_ord_id=b.tp_cid, symbol=inst.symbol, side=OrderSide.SELL, qty=b.tp.qty)
    assert (await broker.cancel_order(cancel)).accepted
    await market.set_mid(inst.symbol, mid)
