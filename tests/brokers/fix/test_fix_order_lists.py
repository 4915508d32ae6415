"""Order lists end to end on the FIX venue: the coordinator and its legs as order workflows, the FIX adapter over a
real QuickFIX session to the local FIX venue (emulated contingencies: FIX has no native brackets or OCO)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from core.contingency import Contingency, LegRole, TriggerMode
from core.domain import OrderStatus
from core.orderlist import ListStatus, OrderListRequest
from tests.brokers.fix.test_fix_workflow import FixStack, fix_stack
from tests.workflows.recording import record_history
from tests.workflows.test_order_list import make_list, start, wait_list
from tests.workflows.test_order_list_quotes import position
from workflows.order_list import OrderListWorkflow

__all__ = ["fix_stack"]  # the module's FIX stack (a fixture)

D = Decimal
S = OrderStatus


def fix_bracket(symbol: str, qty: str, entry: dict[str, Any], tp: str, sl: str, **spec: Any) -> OrderListRequest:
    return make_list(
        Contingency.BRACKET,
        [
            ("entry", LegRole.PARENT, {"broker": "fix", "symbol": symbol, "qty": qty, **entry}),
            (
                "tp",
                LegRole.EXIT,
                {
                    "broker": "fix",
                    "symbol": symbol,
                    "side": "SELL",
                    "qty": qty,
                    "type": "LIMIT",
                    "price": tp,
                    "time_in_force": "GTC",
                    "reduce_only": True,
                },
            ),
            (
                "sl",
                LegRole.EXIT,
                {
                    "broker": "fix",
                    "symbol": symbol,
                    "side": "SELL",
                    "qty": qty,
                    "type": "STOP",
                    "stop_price": sl,
                    "time_in_force": "GTC",
                    "reduce_only": True,
                },
            ),
        ],
        **spec,
    )


async def test_a_bracket_over_fix_entry_fills_in_parts_children_follow_and_the_take_profit_cancels_the_stop(
    fix_stack: FixStack,
) -> None:
    stack, venue = fix_stack.stack, fix_stack.venue
    # MSFT shows 500 at the touch: the entry of 1200 fills 500 + 500 + 200; the exits follow each fill.
    await venue.set_mid("MSFT", D("420.00"))
    request = fix_bracket(
        "MSFT", "1200", {"type": "LIMIT", "price": "421.00"}, tp="440.00", sl="400.00", trigger=TriggerMode.PARTIAL
    )
    decision, handle = await start(stack, request)
    assert decision.approved, decision.reasons
    book = await wait_list(handle, lambda b: b.leg("tp").released and b.leg("sl").released)
    assert book.leg("tp").qty == D(500) and book.leg("sl").qty == D(500)
    await wait_list(handle, lambda b: b.leg("sl").status is S.ACCEPTED and b.leg("tp").status is S.ACCEPTED)
    await venue.step()
    await wait_list(handle, lambda b: b.leg("entry").filled_qty == D(1000))
    await venue.step()
    await wait_list(
        handle,
        lambda b: b.leg("entry").status is S.FILLED and b.leg("sl").order_qty == b.leg("tp").order_qty == 1200,
        timeout=60,
    )
    # The exits were resized at the venue (cancel/replace) as the entry filled.
    assert [e.leg for e in (await handle.query(OrderListWorkflow.state)).events if e.event == "RESIZE"].count("sl") >= 2
    # The take-profit fills in parts (OUO: the stop shrinks with it), then completely: the stop is canceled.
    await venue.set_mid("MSFT", D("441.00"))
    await wait_list(handle, lambda b: b.leg("tp").filled_qty >= D(500), timeout=60)
    for _ in range(3):
        await venue.step()
    result = await handle.result()
    assert result.status is ListStatus.DONE
    assert result.legs == {"entry": S.FILLED, "tp": S.FILLED, "sl": S.CANCELED}
    assert result.flags == []
    book = await handle.query(OrderListWorkflow.state)
    assert "exit-partly-filled:others-reduced" in book.leg("tp").rules
    assert book.leg("tp").rules[-1] == "exit-filled:others-canceled"
    assert await position(stack, request.legs[0].order.account, "MSFT") == D(0)
    # Every fill booked once, each from the venue's execution reports.
    fills = await stack.fetch(
        "SELECT order_id, sum(qty) AS qty, count(DISTINCT exec_id) = count(*) AS unique_ids FROM fills "
        "WHERE order_id = ANY(%s) GROUP BY order_id",
        [request.leg("entry").order.order_id, request.leg("tp").order.order_id],
    )
    assert sorted((f["qty"], f["unique_ids"]) for f in fills) == [(D(1200), True), (D(1200), True)]
    await record_history(handle, "lists/fix-bracket-partial-trigger")


async def test_an_oco_over_fix_whose_legs_both_fill_in_one_feed_step_is_booked_and_flagged(
    fix_stack: FixStack,
) -> None:
    stack, venue = fix_stack.stack, fix_stack.venue
    # A BUY LIMIT above the market's next price and a SELL STOP: one jump fills both before the cancel can land.
    await venue.set_mid("NVDA", D("120.00"))
    request = make_list(
        Contingency.OCO,
        [
            ("a", LegRole.MEMBER, {"broker": "fix", "symbol": "NVDA", "qty": "10", "type": "LIMIT", "price": "118.00"}),
            (
                "b",
                LegRole.MEMBER,
                {
                    "broker": "fix",
                    "symbol": "NVDA",
                    "side": "SELL",
                    "qty": "10",
                    "type": "STOP",
                    "stop_price": "116.00",
                },
            ),
        ],
    )
    decision, handle = await start(stack, request)
    assert decision.approved, decision.reasons
    await wait_list(handle, lambda b: all(g.status is S.ACCEPTED for g in b.legs))
    venue.venue.cancels_open.clear()
    try:
        await venue.set_mid("NVDA", D("115.00"))
        await wait_list(handle, lambda b: all(g.filled_qty == D(10) for g in b.legs), timeout=60)
    finally:
        venue.venue.cancels_open.set()
    result = await handle.result()
    assert result.legs == {"a": S.FILLED, "b": S.FILLED}
    assert result.flags == ["OVERFILL: more than one OCO leg filled (a 10, b 10)"]
    # Both booked: bought 10, sold 10.
    assert await position(stack, request.legs[0].order.account, "NVDA") == D(0)
    for leg in ("a", "b"):
        [row] = await stack.fetch(
            "SELECT status, filled_qty FROM orders WHERE order_id = %s", request.leg(leg).order.order_id
        )
        assert row == {"status": "FILLED", "filled_qty": D(10)}
