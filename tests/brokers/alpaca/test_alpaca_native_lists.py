"""Native order lists at Alpaca end to end: through the REST API, the coordinator's native path, the legs' order
workflows, the Alpaca adapter and the local Alpaca venue (its order classes), Postgres for the ledger."""

from __future__ import annotations

from decimal import Decimal

from tests.brokers.alpaca.kit import eventually
from tests.brokers.alpaca.test_alpaca_workflow import AlpacaStack, _calm, alpaca_stack  # noqa: F401 (fixtures)
from tests.brokers.nativekit import NativeLists, desk, post_list, reservations_released, states, until
from tests.workflows.recording import record_history
from workflows.order_list import OrderListWorkflow

D = Decimal


lists = NativeLists("alpaca")


async def test_a_native_bracket_entry_fills_take_profit_fills_and_alpaca_cancels_the_stop(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)
    posts = s.venue.requests.get("POST /v2/orders", 0)
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "191.00", "200.00", "180.00"))
        view = await until(
            http, list_id, lambda v: states(v) == {"entry": "FILLED", "tp": "ACCEPTED", "sl": "ACCEPTED"}
        )
        assert view["native"] is True
        # One POST for the whole list: the exits are Alpaca's legs of the entry, followed under our own ids.
        assert s.venue.requests.get("POST /v2/orders", 0) == posts + 1
        entry_id = view["legs"][0]["internalOrderId"]
        [group] = [g for g in s.venue.order_classes.values() if g.head == entry_id]
        assert group.order_class == "bracket" and [leg.active for leg in group.legs] == [True, True]

        await s.venue.set_mid("AAPL", D("201.00"))  # the take-profit fills; Alpaca cancels the stop-loss
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
        assert states(view) == {"entry": "FILLED", "tp": "FILLED", "sl": "CANCELED"}, view
        assert not view["flags"], view["flags"]
        tp_id, sl_id = view["legs"][1]["internalOrderId"], view["legs"][2]["internalOrderId"]
        tp = (await http.get(f"/api/v1/orders/{tp_id}")).json()
        assert tp["status"] == "FILLED" and D(tp["filledQty"]) == 10
        sl = (await http.get(f"/api/v1/orders/{sl_id}")).json()
        assert sl["status"] == "CANCELED"
    assert [f["qty"] for f in await s.fills(tp_id)] == [D(10)]
    assert await s.fills(sl_id) == []
    stop = next(leg for leg in group.legs if leg.role == "stop_loss")
    assert stop.status != "held"
    # The stop's end came from Alpaca: the venue canceled it (the coordinator's own cancel found it canceled).
    [row] = await s.stack.fetch("SELECT status FROM orders WHERE order_id = %s", sl_id)
    assert row["status"] == "CANCELED"

    # The risk reservations of the list's orders are released.
    await reservations_released(s.stack, [entry_id, tp_id, sl_id])
    client_ = s.stack.client
    await record_history(
        client_.get_workflow_handle_for(OrderListWorkflow.run, f"list-{list_id}"),
        "lists/alpaca-native-bracket-tp-filled",
    )
    for name, order_id in (("entry", entry_id), ("tp", tp_id), ("sl", sl_id)):
        await record_history(client_.get_workflow_handle(f"order-{order_id}"), f"alpaca-native-bracket-leg-{name}-lean")
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_a_native_oco_at_alpaca_one_leg_fills_and_the_other_is_canceled(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)
    body = lists.oco(
        client,
        lists.leg("above", "MEMBER", "BUY", type="STOP", stopPrice="195.00"),
        lists.leg("below", "MEMBER", "BUY", price="185.00"),
    )
    posts = s.venue.requests.get("POST /v2/orders", 0)
    async with s.stack.api() as http:
        list_id = await post_list(http, body)
        view = await until(http, list_id, lambda v: states(v) == {"above": "ACCEPTED", "below": "ACCEPTED"})
        assert view["native"] is True and s.venue.requests.get("POST /v2/orders", 0) == posts + 1
        await s.venue.set_mid("AAPL", D("184.00"))  # the limit fills; Alpaca cancels the stop
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
        assert states(view) == {"above": "CANCELED", "below": "FILLED"}, view
        assert not view["flags"]
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_a_native_bracket_alpaca_refuses_is_a_rejected_entry_and_its_exits_never_sent(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)
    async with s.stack.api() as http:
        # A stop-loss above the entry's price: Alpaca refuses the whole order (422), so the list's entry is rejected.
        list_id = await post_list(http, lists.bracket(client, "185.00", "200.00", "186.00"))
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
    assert states(view) == {"entry": "REJECTED", "tp": "CANCELED", "sl": "CANCELED"}, view
    assert "stop_loss.stop_price must be <= base_price - 0.01" in view["legs"][0]["reason"]
    assert all(not leg["links"] for leg in view["legs"][1:])


async def test_a_native_bracket_resting_its_held_exits_cannot_change_here_and_a_cancel_ends_all_three(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "185.00", "200.00", "180.00"))
        view = await until(http, list_id, lambda v: states(v)["entry"] == "ACCEPTED")
        assert states(view) == {"entry": "ACCEPTED", "tp": "HELD", "sl": "HELD"}
        r = await http.patch(f"/api/v1/order-lists/{list_id}/legs/tp", json={"price": "205.00"})
        assert r.status_code == 409 and "native" in r.text, r.text
        entry_id = view["legs"][0]["internalOrderId"]
        [group] = [g for g in s.venue.order_classes.values() if g.head == entry_id]
        assert [leg.status for leg in group.legs] == ["held", "held"]
        r = await http.post(f"/api/v1/order-lists/{list_id}/cancel", json={"reason": "desk request"})
        assert r.status_code == 202
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
    assert states(view) == {"entry": "CANCELED", "tp": "CANCELED", "sl": "CANCELED"}
    assert [leg.status for leg in group.legs] == ["canceled", "canceled"]  # Alpaca canceled the held legs


async def test_a_trailing_stop_over_alpaca_is_alpacas_own(alpaca_stack: AlpacaStack) -> None:  # noqa: F811
    s = alpaca_stack
    await s.venue.set_mid("AAPL", D("190.00"))
    async with s.stack.api() as http:
        order_id = await s.post(http, qty=4, type="TRAILING_STOP", trailAmount="1.00", timeInForce="GTC")
        order = await s.wait(http, order_id, "ACCEPTED")
        # Sent as Alpaca's trailing_stop at once (not held and emulated in the workflow).
        assert order_id in s.venue.trails and "EMULATE" not in [e["kind"] for e in order["events"]]
        await s.venue.set_mid("AAPL", D("188.00"))  # a buy's mark follows the low: stop 189
        await s.venue.set_mid("AAPL", D("189.50"))  # through it
        order = await s.wait(http, order_id, "FILLED")
    assert D(order["filledQty"]) == 4 and D(order["avgPrice"]) == D("189.51")
    trail = s.venue.trails[order_id]
    assert trail.hwm == D("188.00") and trail.triggered
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_exits_risk_denies_when_released_are_canceled_at_alpaca_and_the_position_flagged(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)

    async def trading(state: str) -> None:
        body = {"scope": "ACCOUNT", "key": client, "state": state, "reason": "drill"}
        r = await http.post("/api/v1/operator/trading-state", json=body)
        assert r.status_code == 200, r.text

    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "185.00", "200.00", "180.00"))
        view = await until(http, list_id, lambda v: states(v)["entry"] == "ACCEPTED")
        entry_id = view["legs"][0]["internalOrderId"]
        [group] = [g for g in s.venue.order_classes.values() if g.head == entry_id]
        # The account is halted while the entry rests; its fill activates Alpaca's legs, but risk denies their
        # orders when the list releases them: the coordinator cancels them at Alpaca.
        await trading("HALTED")
        try:
            await s.venue.set_mid("AAPL", D("184.00"))
            view = await until(http, list_id, lambda v: v["status"] == "DONE")
        finally:
            await trading("ACTIVE")
    assert states(view) == {"entry": "FILLED", "tp": "DENIED", "sl": "DENIED"}, view
    # (The two legs' denials reach the list in either order.)
    assert sorted(e["leg"] for e in view["events"] if e["event"] == "BROKER_LEG_CANCELED") == ["sl", "tp"]
    assert any(f.startswith(("UNPROTECTED: tp DENIED", "UNPROTECTED: sl DENIED")) for f in view["flags"]), view

    async def canceled_at_alpaca() -> bool:
        orders = [s.venue.sim.engine.find(leg.cl_ord_id) for leg in group.legs]
        return all(o is not None and not o.is_open and o.filled_qty == 0 for o in orders)

    await eventually(canceled_at_alpaca)
    await s.venue.set_mid("AAPL", D("190.00"))


async def test_a_native_bracket_whose_post_answer_is_lost_is_looked_up_never_sent_twice(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    s = alpaca_stack
    client = await desk(s)
    posts = s.venue.requests.get("POST /v2/orders", 0)
    duplicates = s.venue.sim.duplicate_submits
    s.venue.faults.add("drop_after", method="POST", path="/v2/orders")  # Alpaca took it; the answer is lost
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "191.00", "200.00", "180.00"))
        view = await until(
            http, list_id, lambda v: states(v) == {"entry": "FILLED", "tp": "ACCEPTED", "sl": "ACCEPTED"}
        )
        # The entry was found by its client order id and its legs among its nested legs: one POST in all.
        assert s.venue.requests.get("POST /v2/orders", 0) == posts + 1
        assert s.venue.sim.duplicate_submits == duplicates
        r = await http.post(f"/api/v1/order-lists/{list_id}/cancel", json={"reason": "done"})
        assert r.status_code == 202
        view = await until(http, list_id, lambda v: v["status"] == "DONE")
    assert states(view) == {"entry": "FILLED", "tp": "CANCELED", "sl": "CANCELED"}


async def test_a_native_oco_alpaca_refuses_drops_the_leg_waiting_for_it(alpaca_stack: AlpacaStack) -> None:  # noqa: F811
    s = alpaca_stack
    client = await desk(s)
    body = lists.oco(
        client,
        lists.leg("above", "MEMBER", "BUY", type="STOP", stopPrice="195.00"),
        lists.leg("limit", "MEMBER", "BUY", price="196.00"),  # a buy OCO's limit is below its stop
    )
    async with s.stack.api() as http:
        r = await http.post("/api/v1/order-lists", json=body)
        assert r.status_code == 201, r.text
        list_id = r.json()["listId"]
        view = await until(http, list_id, lambda v: v["status"] in ("DONE", "DENIED"))
    assert states(view) == {"above": "CANCELED", "limit": "REJECTED"}, view
    assert "take_profit.limit_price must be < stop_loss.stop_price" in view["legs"][1]["reason"]
    assert "never at the broker" in view["legs"][0]["reason"]
    assert view["legs"][0]["links"] == {}  # never started as an order of its own


async def test_a_sweep_of_alpaca_matches_a_native_brackets_legs_with_their_orders(
    alpaca_stack: AlpacaStack,  # noqa: F811
) -> None:
    # Issue 18 meets issue 15: Alpaca names a native leg with its own client order id; the sweep must still match
    # the working legs with their orders (a leg it did not find would be signaled as "no longer working").
    from worker.sweep import BrokerSweep

    s = alpaca_stack
    client = await desk(s)
    async with s.stack.api() as http:
        list_id = await post_list(http, lists.bracket(client, "191.00", "200.00", "180.00"))  # the entry fills at once
        view = await until(
            http, list_id, lambda v: states(v) == {"entry": "FILLED", "tp": "ACCEPTED", "sl": "ACCEPTED"}
        )
        legs = {leg["internalOrderId"] for leg in view["legs"][1:]}
        rows = await s.stack.fetch("SELECT status FROM orders WHERE order_id = ANY(%s)", list(legs))
        assert [r["status"] for r in rows] == ["ACCEPTED", "ACCEPTED"]  # both are working orders to sweep
        sweeper = BrokerSweep(s.stack.client, s.stack.pool, s.stack.brokers["alpaca"], interval=1, grace_seconds=0.2)
        outcome = await sweeper.sweep_once()
        assert outcome.requests == 1 and outcome.working >= 2
        assert not legs & set(outcome.signaled), outcome.signaled
        r = await http.post(f"/api/v1/order-lists/{list_id}/cancel", json={"reason": "test over"})
        assert r.status_code == 202, r.text
        await until(http, list_id, lambda v: v["status"] == "DONE")
    await s.venue.set_mid("AAPL", D("190.00"))
