"""Order-list legs held on quotes, on paper: a trailing-stop exit and a stop held on the mid (patch
``list-quote-triggers``), and a long-lived list continuing as new (patch ``list-continue-as-new``)."""

from __future__ import annotations

import json
from decimal import Decimal as D
from typing import Any

from core.contingency import Contingency, LegRole
from core.domain import CancelRequest, OrderStatus
from core.legtrigger import PriceTrigger
from core.orderlist import LegSpec, ListBook, ListStatus, OrderListRequest
from core.settings import Settings
from tests.harness import Stack
from tests.workflows.recording import HISTORIES, record_history
from tests.workflows.test_order_list import make_list, wait_list
from tests.workflows.test_replay import _payload_text
from workflows.order_client import list_start
from workflows.order_list import PATCH_LIST_CONTINUE_AS_NEW, PATCH_LIST_QUOTE_TRIGGERS, OrderListWorkflow

S = OrderStatus
#: Quote checks run this often in the tests (the default is a second).
CHECK = 0.2


async def position(stack: Stack, account: str, symbol: str) -> D:
    rows = await stack.fetch("SELECT qty FROM positions WHERE account = %s AND symbol = %s", account, symbol)
    return rows[0]["qty"] if rows else D(0)


def fast(settings: Settings, **orders: Any) -> Settings:
    return settings.model_copy(
        update={"orders": settings.orders.model_copy(update={"trail_check_seconds": CHECK, **orders})}
    )


def trailing_bracket(symbol: str, qty: str, tp: str, **trail: Any) -> OrderListRequest:
    return make_list(
        Contingency.BRACKET,
        [
            ("entry", LegRole.PARENT, {"symbol": symbol, "qty": qty, "type": "MARKET"}),
            (
                "tp",
                LegRole.EXIT,
                {"symbol": symbol, "side": "SELL", "qty": qty, "type": "LIMIT", "price": tp, "reduce_only": True},
            ),
            (
                "sl",
                LegRole.EXIT,
                {
                    "symbol": symbol,
                    "side": "SELL",
                    "qty": qty,
                    "type": "TRAILING_STOP",
                    "time_in_force": "GTC",
                    "reduce_only": True,
                    **trail,
                },
            ),
        ],
    )


async def start(stack: Stack, request: OrderListRequest, settings: Settings) -> tuple[Any, Any]:
    begin = list_start(request, settings)
    decision = await begin.decide(stack.client)
    return decision, stack.client.get_workflow_handle_for(OrderListWorkflow.run, begin.workflow_id)


async def test_a_bracket_with_a_trailing_stop_loss_ratchets_in_the_coordinator_and_sends_one_market_order(
    stack: Stack,
) -> None:
    await stack.venue.set_mid("SPY", D("150.00"))
    request = trailing_bracket("SPY", "10", tp="160.00", trail_amount=D("1.00"))
    decision, handle = await start(stack, request, fast(stack.settings))
    assert decision.approved, decision.reasons
    book = await wait_list(handle, lambda b: b.leg("sl").trail is not None and b.leg("sl").trail.trigger is not None)
    sl = book.leg("sl")
    assert sl.shown_status == "EMULATED" and sl.armed and sl.qty == D(10)
    assert sl.trail is not None and sl.trail.trigger == D("148.99")  # bid 149.99 less the trail
    assert await stack.venue.status(request.leg("sl").order.order_id) is None  # nothing at the venue

    await stack.venue.set_mid("SPY", D("155.00"))
    await wait_list(handle, lambda b: b.leg("sl").trail is not None and b.leg("sl").trail.trigger == D("153.99"))
    await stack.venue.set_mid("SPY", D("154.50"))  # down, not through the trigger: it holds
    await wait_list(handle, lambda b: b.leg("sl").trail is not None and b.leg("sl").trail.last_price == D("154.49"))
    assert (await handle.query(OrderListWorkflow.state)).leg("sl").trail.trigger == D("153.99")
    assert await stack.venue.status(request.leg("sl").order.order_id) is None

    await stack.venue.set_mid("SPY", D("153.50"))  # bid 153.49 crosses 153.99: sent as one MARKET order
    result = await handle.result()
    assert result.status is ListStatus.DONE
    assert result.legs == {"entry": S.FILLED, "tp": S.CANCELED, "sl": S.FILLED} and result.flags == []
    book = await handle.query(OrderListWorkflow.state)
    triggered = [e for e in book.events if e.event == "TRIGGERED"]
    assert len(triggered) == 1 and triggered[0].leg == "sl" and "sent as MARKET 10" in triggered[0].detail
    assert book.leg("sl").emulated_terms is not None
    rows = await stack.fetch(
        "SELECT type, status, filled_qty FROM orders WHERE order_id = %s", request.leg("sl").order.order_id
    )
    assert rows == [{"type": "MARKET", "status": "FILLED", "filled_qty": D(10)}]
    assert await position(stack, request.legs[0].order.account, "SPY") == D(0)
    bought = await stack.fetch(
        "SELECT sum(qty) AS qty FROM fills WHERE order_id = %s", request.leg("entry").order.order_id
    )
    assert bought == [{"qty": D(10)}]
    await record_history(handle, "lists/paper-bracket-trailing-stop-held-on-quotes")


async def test_a_stop_held_on_the_mid_is_sent_only_when_the_mid_meets_it_and_a_cancel_drops_it_unsent(
    stack: Stack,
) -> None:
    await stack.venue.set_mid("NVDA", D("40.00"))
    request = make_list(
        Contingency.OTO,
        [
            ("entry", LegRole.PARENT, {"symbol": "NVDA", "qty": "20", "type": "MARKET"}),
            (
                "stop",
                LegRole.CHILD,
                {"symbol": "NVDA", "side": "SELL", "qty": "20", "type": "STOP", "stop_price": "38.00"},
            ),
            (
                "other",
                LegRole.CHILD,
                {"symbol": "NVDA", "side": "SELL", "qty": "20", "type": "STOP", "stop_price": "37.00"},
            ),
        ],
    )
    legs = [
        g.model_copy(update={"emulation_trigger": PriceTrigger.MID}) if g.name != "entry" else g for g in request.legs
    ]
    request = request.model_copy(update={"legs": legs})
    decision, handle = await start(stack, request, fast(stack.settings))
    assert decision.approved, decision.reasons
    await wait_list(handle, lambda b: b.leg("entry").status is S.FILLED and b.leg("stop").armed)
    await stack.venue.set_mid("NVDA", D("38.01"))  # the bid (38.00) is at the stop; the mid is not
    await wait_list(handle, lambda b: any(e.event == "ARMED" for e in b.events))
    book = await wait_list(handle, lambda b: b.leg("stop").armed)
    assert await stack.venue.status(request.leg("stop").order.order_id) is None
    await stack.venue.set_mid("NVDA", D("37.90"))
    book = await wait_list(handle, lambda b: b.leg("stop").status is S.FILLED)
    assert book.leg("other").armed and book.leg("other").shown_status == "EMULATED"
    await handle.signal(OrderListWorkflow.cancel, CancelRequest(requested_by="desk", reason="done"))
    result = await handle.result()
    assert result.legs == {"entry": S.FILLED, "stop": S.FILLED, "other": S.CANCELED}
    assert await stack.venue.status(request.leg("other").order.order_id) is None  # never sent
    await record_history(handle, "lists/paper-oto-stop-held-on-mid")


async def test_a_long_lived_list_continues_as_new_and_carries_its_book(stack: Stack) -> None:
    await stack.venue.set_mid("SPY", D("120.00"))
    request = trailing_bracket("SPY", "5", tp="130.00", trail_percent=D("2"))
    settings = fast(stack.settings, continue_as_new_events=60)
    decision, handle = await start(stack, request, settings)
    assert decision.approved, decision.reasons
    first = (await handle.describe()).run_id
    book: ListBook = await wait_list(
        handle, lambda b: any(e.event == "CONTINUED" for e in b.events) and b.leg("sl").trail is not None, timeout=60
    )
    assert (await handle.describe()).run_id != first
    assert book.leg("sl").armed and book.leg("tp").released and book.decision is not None
    await stack.venue.set_mid("SPY", D("125.00"))  # the trail follows in the new run: 2% under the best bid
    await wait_list(handle, lambda b: b.leg("sl").trail is not None and b.leg("sl").trail.extreme == D("124.99"))
    await handle.signal(OrderListWorkflow.cancel, CancelRequest(requested_by="desk", reason="done"))
    result = await handle.result()
    assert result.legs == {"entry": S.FILLED, "tp": S.CANCELED, "sl": S.CANCELED}
    book = await handle.query(OrderListWorkflow.state)
    assert [e.event for e in book.events].count("RECEIVED") == 1  # one list, carried across its runs
    rows = await stack.fetch("SELECT status FROM order_lists WHERE list_id = %s", request.list_id)
    assert rows == [{"status": "DONE"}]
    await record_history(
        stack.client.get_workflow_handle(handle.id, run_id=first), "lists/paper-bracket-trailing-continued-as-new"
    )
    await record_history(handle, "lists/paper-bracket-trailing-continued-run")


def test_the_leg_spec_carries_its_trigger() -> None:
    spec = LegSpec.model_validate(
        {
            "name": "x",
            "role": "EXIT",
            "emulation_trigger": "LAST",
            "order": make_list(
                Contingency.OCO,
                [
                    ("a", LegRole.MEMBER, {"qty": "1", "type": "LIMIT", "price": "1"}),
                    ("b", LegRole.MEMBER, {"qty": "1", "type": "LIMIT", "price": "1"}),
                ],
            )
            .legs[0]
            .order.model_dump(),
        }
    )
    assert spec.emulation_trigger is PriceTrigger.LAST


def test_committed_list_histories_cover_the_quote_triggers_and_continue_as_new() -> None:
    # Lists of this release in flight at the next upgrade: the patched paths, recorded only where lists take them
    # (tests/workflows/test_replay.py replays every file of histories/lists).
    lists = HISTORIES / "lists"
    for name in ("paper-bracket-trailing-stop-held-on-quotes", "paper-oto-stop-held-on-mid"):
        text = _payload_text(json.loads((lists / f"{name}.json").read_text()))
        assert PATCH_LIST_QUOTE_TRIGGERS in text and '"bid"' in text, name  # a quote check's answer
    raw = (lists / "paper-bracket-trailing-continued-as-new.json").read_text()
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW" in raw
    assert PATCH_LIST_CONTINUE_AS_NEW in _payload_text(json.loads(raw))
    events = json.loads((lists / "paper-bracket-trailing-continued-run.json").read_text())["events"]
    assert events[0]["workflowExecutionStartedEventAttributes"].get("continuedExecutionRunId")
    plain = (lists / "paper-bracket-partial-trigger-read-model.json").read_text()
    assert PATCH_LIST_QUOTE_TRIGGERS not in _payload_text(json.loads(plain))
