"""Native lists at IB end to end: through the REST API, the coordinator's native path, the legs' order workflows,
the IB adapter (real ib_async) and the local TWS venue (parent + children in an OCA group), Postgres for the ledger."""

from __future__ import annotations

from decimal import Decimal

from devstack.venues.ib.wire import IN
from tests.brokers.ib.test_ib_workflow import IBStack, _calm, ib_stack  # noqa: F401 (fixtures)
from tests.brokers.nativekit import NativeLists, desk, post_list, reservations_released, states, until

D = Decimal


lists = NativeLists("ib")


async def test_a_native_bracket_at_ib_entry_fills_take_profit_fills_and_the_oca_group_cancels_the_stop(
    ib_stack: IBStack,  # noqa: F811
) -> None:
    s = ib_stack
    client = await desk(s)
    placed = s.venue.served.get(IN.PLACE_ORDER, 0)
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "185.00", "200.00", "180.00"))
        view = await until(http, list_id, lambda v: states(v)["entry"] == "ACCEPTED")
        assert view["native"] is True
        assert states(view) == {"entry": "ACCEPTED", "tp": "HELD", "sl": "HELD"}
        entry_id, tp_id, sl_id = (leg["internalOrderId"] for leg in view["legs"])
        by_ref = {o.order_ref: o for o in s.venue.orders.values()}  # orderRef: each leg's own client order id
        entry, tp, sl = by_ref[entry_id], by_ref[tp_id], by_ref[sl_id]
        # Three placeOrders for the list, the exits children of the entry in one OCA group, held by the venue.
        assert s.venue.served.get(IN.PLACE_ORDER, 0) == placed + 3
        assert tp.parent_id == sl.parent_id == entry.order_id and tp.oca_group == sl.oca_group != ""
        assert tp.status == sl.status == "PreSubmitted"
        await s.venue.set_mid("AAPL", D("184.00"))  # the entry fills: IB activates its children
        view = await until(
            http, list_id, lambda v: states(v) == {"entry": "FILLED", "tp": "ACCEPTED", "sl": "ACCEPTED"}
        )
        assert tp.working and sl.working
        # The legs' workflows sent nothing: still three placeOrders.
        assert s.venue.served.get(IN.PLACE_ORDER, 0) == placed + 3
        await s.venue.set_mid("AAPL", D("201.00"))  # the take-profit fills; the OCA group cancels the stop
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
        assert states(view) == {"entry": "FILLED", "tp": "FILLED", "sl": "CANCELED"}, view
        assert not view["flags"], view["flags"]
        sl_view = (await http.get(f"/api/v1/orders/{sl_id}")).json()
        assert sl_view["status"] == "CANCELED"
    assert "OCA" in sl.completed_status
    assert [f["qty"] for f in await s.fills(tp_id)] == [D(10)]
    assert await s.fills(sl_id) == []
    assert s.venue.served.get(IN.PLACE_ORDER, 0) == placed + 3

    await reservations_released(s.stack, [entry_id, tp_id, sl_id])
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_a_native_bracket_at_ib_canceled_while_resting_ends_all_three(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    client = await desk(s)
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "185.00", "200.00", "180.00"))
        view = await until(http, list_id, lambda v: states(v)["entry"] == "ACCEPTED")
        assert view["native"] is True
        r = await http.post(f"/api/v1/order-lists/{list_id}/cancel", json={"reason": "desk request"})
        assert r.status_code == 202
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
    assert states(view) == {"entry": "CANCELED", "tp": "CANCELED", "sl": "CANCELED"}, view
    refs = {leg["internalOrderId"] for leg in view["legs"]}
    mine = [o for o in s.venue.orders.values() if o.order_ref in refs]
    assert len(mine) == 3 and all(o.status == "Cancelled" for o in mine)
    assert all(not o.working for o in mine if o.parent_id)  # the children never worked


async def test_a_native_oco_at_ib_one_fills_and_the_other_is_canceled(ib_stack: IBStack) -> None:  # noqa: F811
    s = ib_stack
    client = await desk(s)
    body = lists.oco(
        client,
        lists.leg("above", "MEMBER", "BUY", type="STOP", stopPrice="195.00"),
        lists.leg("below", "MEMBER", "BUY", price="185.00"),
    )
    async with s.stack.api() as http:
        list_id = await post_list(http, body)
        view = await until(http, list_id, lambda v: states(v) == {"above": "ACCEPTED", "below": "ACCEPTED"})
        assert view["native"] is True
        await s.venue.set_mid("AAPL", D("184.00"))  # the limit fills; the OCA group cancels the stop
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
        assert states(view) == {"above": "CANCELED", "below": "FILLED"}, view
        assert not view["flags"]
    await s.venue.set_mid("AAPL", D("190.00"))
