"""Order lists end to end on the paper venue (emulated): the coordinator, its legs as order workflows, the rules."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal as D
from typing import Any

from temporalio.client import WorkflowHandle

from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import CancelRequest, OrderStatus
from core.orderlist import LegSpec, ListBook, ListStatus, OrderListRequest, derive_list_id, leg_order_id
from tests.harness import Stack, make_order, unique
from tests.workflows.recording import record_history
from workflows.order_client import list_start
from workflows.order_list import OrderListWorkflow

S = OrderStatus


def make_list(
    contingency: Contingency, legs: list[tuple[str, LegRole, dict[str, Any]]], **spec: Any
) -> OrderListRequest:
    client = unique("client")
    key = f"{client}/list/{unique('l')}"
    specs = []
    for name, role, terms in legs:
        order = make_order(client_id=client, **terms)
        specs.append(
            LegSpec(
                name=name,
                role=role,
                order=order.model_copy(
                    update={"order_id": leg_order_id(key, name), "idempotency_key": f"{key}#{name}"}
                ),
            )
        )
    linked = [s for s in specs if s.role in (LegRole.EXIT, LegRole.MEMBER)]
    specs = [
        s.model_copy(
            update={
                "order": s.order.model_copy(
                    update={"linked_orders": tuple(o.order.order_id for o in linked if o.name != s.name)}
                )
            }
        )
        if s in linked
        else s
        for s in specs
    ]
    return OrderListRequest(
        list_id=derive_list_id(key),
        idempotency_key=key,
        request_hash=uuid.uuid4().hex,
        client_id=client,
        client_list_id=key.rsplit("/", 1)[-1],
        received_at=datetime.now(UTC),
        submission_id=uuid.uuid4().hex,
        contingency=contingency,
        legs=specs,
        **spec,
    )


def bracket(qty: str, entry: dict[str, Any], tp: str, sl: str, **spec: Any) -> OrderListRequest:
    return make_list(
        Contingency.BRACKET,
        [
            ("entry", LegRole.PARENT, {"symbol": "AAPL", "qty": qty, **entry}),
            (
                "tp",
                LegRole.EXIT,
                {"symbol": "AAPL", "side": "SELL", "qty": qty, "type": "LIMIT", "price": tp, "reduce_only": True},
            ),
            (
                "sl",
                LegRole.EXIT,
                {"symbol": "AAPL", "side": "SELL", "qty": qty, "type": "STOP", "stop_price": sl, "reduce_only": True},
            ),
        ],
        **spec,
    )


async def start(stack: Stack, request: OrderListRequest) -> tuple[Any, WorkflowHandle[Any, Any]]:
    begin = list_start(request, stack.settings)
    decision = await begin.decide(stack.client)
    return decision, stack.client.get_workflow_handle_for(OrderListWorkflow.run, begin.workflow_id)


async def wait_list(
    handle: WorkflowHandle[Any, Any], check: Callable[[ListBook], bool], *, timeout: float = 30.0
) -> ListBook:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        book: ListBook = await handle.query(OrderListWorkflow.state)
        if check(book):
            return book
        if asyncio.get_running_loop().time() > deadline:
            legs = {g.name: (g.shown_status, str(g.filled_qty), str(g.qty)) for g in book.legs}
            raise AssertionError(f"timed out; list {book.status}: {legs} {[e.event for e in book.events]}")
        await asyncio.sleep(0.05)


def filled(name: str, qty: str) -> Callable[[ListBook], bool]:
    return lambda b: b.leg(name).filled_qty == D(qty)


async def position(stack: Stack, account: str) -> D:
    rows = await stack.fetch("SELECT qty FROM positions WHERE account = %s AND symbol = 'AAPL'", account)
    return rows[0]["qty"] if rows else D(0)


async def test_bracket_entry_fills_in_parts_children_follow_and_the_take_profit_cancels_the_stop(stack: Stack) -> None:
    # AAPL shows 500 at the touch: the entry of 1200 fills 500 + 500 + 200; the exits follow each fill.
    await stack.venue.set_mid("AAPL", D("190.00"))
    request = bracket(
        "1200", {"type": "LIMIT", "price": "191.00"}, tp="200.00", sl="180.00", trigger=TriggerMode.PARTIAL
    )
    decision, handle = await start(stack, request)
    assert decision.approved, decision.reasons
    book = await wait_list(handle, lambda b: b.leg("tp").released and b.leg("sl").released)
    assert book.leg("tp").qty == D(500) and book.leg("sl").qty == D(500)
    await stack.venue.step()
    await wait_list(handle, filled("entry", "1000"))
    await stack.venue.step()
    book = await wait_list(
        handle, lambda b: b.leg("entry").status is S.FILLED and b.leg("sl").order_qty == b.leg("tp").order_qty == 1200
    )
    # The take-profit fills in parts (OUO: the stop shrinks with it), then completely: the stop is canceled.
    await stack.venue.set_mid("AAPL", D("201.00"))
    await wait_list(handle, lambda b: b.leg("tp").filled_qty >= D(500))
    await stack.venue.step()
    await stack.venue.step()
    result = await handle.result()
    assert result.status is ListStatus.DONE
    assert result.legs == {"entry": S.FILLED, "tp": S.FILLED, "sl": S.CANCELED}
    assert result.flags == []
    book = await handle.query(OrderListWorkflow.state)
    assert "exit-partly-filled:others-reduced" in book.leg("tp").rules
    assert book.leg("tp").rules[-1] == "exit-filled:others-canceled"
    assert any(e.event == "RESIZE" and e.leg == "sl" for e in book.events)
    assert await position(stack, request.legs[0].order.account) == D(0)
    # The legs are ordinary orders, with the list's id to find them by.
    found = [w.id async for w in stack.client.list_workflows(f"ExodusListId = '{request.list_id}'")]
    assert sorted(found) == sorted([f"list-{request.list_id}"] + [f"order-{g.order.order_id}" for g in request.legs])
    await record_history(handle, "lists/paper-bracket-partial-trigger-read-model")
    for leg in ("entry", "tp"):
        order = stack.client.get_workflow_handle(f"order-{request.leg(leg).order.order_id}")
        await record_history(order, f"paper-bracket-leg-{leg}-by-counts")


async def test_bracket_with_full_trigger_holds_the_exits_until_the_entry_is_filled(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    request = bracket("600", {"type": "LIMIT", "price": "191.00"}, tp="200.00", sl="180.00")
    decision, handle = await start(stack, request)
    assert decision.approved
    book = await wait_list(handle, filled("entry", "500"))
    assert [g.shown_status for g in book.legs[1:]] == ["EMULATED", "EMULATED"]
    await stack.venue.step()
    book = await wait_list(handle, lambda b: b.leg("sl").status is S.ACCEPTED and b.leg("tp").status is S.ACCEPTED)
    assert book.leg("sl").order_qty == D(600)
    await handle.signal(OrderListWorkflow.cancel, CancelRequest(requested_by="desk", reason="done for today"))
    result = await handle.result()
    assert result.legs == {"entry": S.FILLED, "tp": S.CANCELED, "sl": S.CANCELED} and result.flags == []


async def test_oco_both_legs_filled_in_one_feed_step_are_booked_and_flagged(stack: Stack) -> None:
    # A BUY LIMIT above the market and a BUY STOP below it: one jump fills both before any cancel can land.
    await stack.venue.set_mid("MSFT", D("420.00"))
    request = make_list(
        Contingency.OCO,
        [
            ("a", LegRole.MEMBER, {"symbol": "MSFT", "qty": "10", "type": "LIMIT", "price": "415.00"}),
            ("b", LegRole.MEMBER, {"symbol": "MSFT", "qty": "10", "type": "STOP", "stop_price": "410.00"}),
        ],
    )
    request = request.model_copy(
        update={
            "legs": [
                g.model_copy(update={"order": g.order.model_copy(update={"side": "SELL"})}) if g.name == "b" else g
                for g in request.legs
            ]
        }
    )
    decision, handle = await start(stack, request)
    assert decision.approved, decision.reasons
    await wait_list(handle, lambda b: all(g.status is S.ACCEPTED for g in b.legs))
    stack.venue.cancels_open.clear()
    try:
        await stack.venue.set_mid("MSFT", D("405.00"))
        await wait_list(handle, lambda b: all(g.filled_qty == D(10) for g in b.legs))
    finally:
        stack.venue.cancels_open.set()
    result = await handle.result()
    assert result.legs == {"a": S.FILLED, "b": S.FILLED}
    assert result.flags == ["OVERFILL: more than one OCO leg filled (a 10, b 10)"]


async def test_a_rejected_stop_loss_raises_the_unprotected_alert_and_flattens(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    # The stop-loss is refused by risk when released (off the tick): the filled entry is left unprotected.
    request = bracket("100", {"type": "MARKET"}, tp="200.00", sl="180.001", flatten_on_unprotected=True)
    decision, handle = await start(stack, request)
    assert decision.approved, decision.reasons
    result = await handle.result()
    assert result.legs == {"entry": S.FILLED, "tp": S.CANCELED, "sl": S.DENIED, "flatten": S.FILLED}
    assert result.flags and result.flags[0].startswith("UNPROTECTED: sl DENIED")
    audit = await stack.fetch(
        "SELECT detail FROM audit_log WHERE action = 'list.unprotected' AND subject = %s", request.list_id
    )
    assert [a["detail"]["leg"] for a in audit] == ["sl"]
    assert await position(stack, request.legs[0].order.account) == D(0)
    await record_history(handle, "lists/paper-bracket-unprotected-flattened-read-model")
    sl = stack.client.get_workflow_handle(f"order-{request.leg('sl').order.order_id}")
    await record_history(sl, "paper-bracket-leg-sl-denied-by-counts")


async def test_a_denied_entry_denies_the_list_and_nothing_is_sent(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    request = bracket("10000000", {"type": "MARKET"}, tp="200.00", sl="180.00")
    decision, handle = await start(stack, request)
    assert not decision.approved and decision.reasons[0].message.startswith("entry: ")
    result = await handle.result()
    assert result.status is ListStatus.DENIED
    assert result.legs == {"entry": S.DENIED, "tp": S.CANCELED, "sl": S.CANCELED}
