"""End to end: orders with ``broker: mt5`` run as Temporal workflows, reach the EA peer over the bridge
endpoints, execute at a simulated XM terminal, and book into the Postgres ledger.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from core.domain import AmendRequest, CancelRequest, OrderStatus, workflow_id_for
from tests.brokers.mt5.conftest import MAGIC, Mt5Stack, Rig
from tests.harness import make_order
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal


def _order(rig: Rig, **kw: Any) -> Any:
    fields: dict[str, Any] = {"symbol": "EURUSD", "qty": "10000", "account": rig.account, "broker": "mt5"}
    fields.update(kw)
    return make_order(**fields)


async def _fetch(stack: Mt5Stack, sql: str, *params: Any) -> list[dict[str, Any]]:
    return await stack.stack.fetch(sql, *params)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.03)


async def test_market_order_over_rest_reaches_the_ea_and_fills_into_the_ledger(xm: Rig, mt5_stack: Mt5Stack) -> None:
    body = {
        "clientOrderId": f"co-{uuid.uuid4().hex[:8]}",
        "clientId": xm.account,
        "account": xm.account,
        "symbol": "EURUSD",
        "qty": "20000",
        "side": "BUY",
        "type": "MARKET",
        "timeInForce": "GTC",
        "broker": "mt5",
    }
    resp = await xm.http.post("/api/v1/orders", json=body)
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["internalOrderId"]
    stack = mt5_stack.stack
    handle = stack.client.get_workflow_handle_for(OrderWorkflow.run, workflow_id_for(order_id))
    result = await handle.result()
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(20000)
    assert D(result.avg_price) == D("1.08501") and result.breaks == []
    [sent] = xm.terminal.sent  # one request reached the terminal
    assert (sent["symbol"], sent["volume"], sent["type"], sent["magic"], sent["comment"]) == (
        "EURUSD#",
        0.2,
        0,
        MAGIC,
        order_id,
    )
    [fill] = await _fetch(mt5_stack, "SELECT exec_id, qty, price FROM fills WHERE order_id = %s", order_id)
    [deal] = xm.terminal.deals.values()
    assert fill["exec_id"] == f"mt5:{xm.account}:deal:{deal.ticket}"
    assert (fill["qty"], fill["price"]) == (D(20000), D("1.08501"))
    [pos] = await _fetch(mt5_stack, "SELECT qty FROM positions WHERE account = %s AND symbol = 'EURUSD'", xm.account)
    assert pos["qty"] == D(20000)
    [row] = await _fetch(mt5_stack, "SELECT broker_order_id, status FROM orders WHERE order_id = %s", order_id)
    assert row["status"] == "FILLED" and row["broker_order_id"] == str(deal.order)
    await record_history(handle, "mt5-market-filled")


async def test_resting_limit_and_stop_orders_fill_when_the_market_reaches_them(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    limit = _order(xm, type="LIMIT", price="1.08000")
    stop = _order(xm, type="STOP", side="SELL", stop_price="1.07900", qty="30000")
    _, h_limit = await stack.submit(limit)
    _, h_stop = await stack.submit(stop)
    state = await stack.wait_for(h_limit, OrderStatus.ACCEPTED)
    assert state.broker_order_id is not None and int(state.broker_order_id) in xm.terminal.orders
    await stack.wait_for(h_stop, OrderStatus.ACCEPTED)
    await xm.terminal.set_mid("EURUSD", D("1.07990"))  # through the limit, not yet the stop
    assert (await stack.result(h_limit)).status is OrderStatus.FILLED
    assert (await stack.state(h_stop)).status is OrderStatus.ACCEPTED
    await xm.terminal.set_mid("EURUSD", D("1.07850"))
    result = await stack.result(h_stop)
    assert result.status is OrderStatus.FILLED and D(result.avg_price) == D("1.07849")  # the bid
    assert len(xm.terminal.sent) == 2


async def test_partial_fills_as_the_terminal_offers_liquidity(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.terminal.sym("EURUSD").liquidity = D("0.1")
    order = _order(xm, type="LIMIT", price="1.08000", qty="25000")
    _, handle = await stack.submit(order)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await xm.terminal.set_mid("EURUSD", D("1.07990"))
    state = await stack.wait_for(handle, lambda s: s.filled_qty == D(10000))
    assert state.status is OrderStatus.PARTIALLY_FILLED
    await xm.terminal.step()
    await stack.wait_for(handle, lambda s: s.filled_qty == D(20000))
    await xm.terminal.step()
    result = await stack.result(handle)
    assert result.status is OrderStatus.FILLED and result.breaks == []
    fills = await _fetch(mt5_stack, "SELECT qty FROM fills WHERE order_id = %s ORDER BY filled_at", order.order_id)
    assert [f["qty"] for f in fills] == [D(10000), D(10000), D(5000)]
    await record_history(handle, "mt5-limit-partial-fills")


async def test_ioc_market_order_fills_what_it_can_and_the_rest_is_canceled(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.terminal.sym("EURUSD").liquidity = D("0.1")
    order = _order(xm, qty="30000", time_in_force="IOC")
    _, handle = await stack.submit(order)
    result = await stack.result(handle)
    assert result.status is OrderStatus.CANCELED and D(result.filled_qty) == D(10000)
    assert result.breaks == []
    assert [s["type_filling"] for s in xm.terminal.sent] == [1]  # IOC only, as asked


async def test_fok_refused_by_the_server_falls_back_to_ioc(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.terminal.sym("EURUSD").refuse_fillings = frozenset({0})
    order = _order(xm)
    _, handle = await stack.submit(order)
    assert (await stack.result(handle)).status is OrderStatus.FILLED
    assert [s["type_filling"] for s in xm.terminal.sent] == [0, 1]  # FOK -> 10030 -> IOC
    [row] = await _fetch(mt5_stack, "SELECT ack FROM mt5_commands WHERE command_id = %s", f"{order.order_id}:NEW")
    assert row["ack"]["filling"] == 1 and row["ack"]["retcode"] == 10009


@pytest.mark.parametrize(
    ("setup", "tif", "expected"),
    [
        ("no_money", "GTC", "MT5 retcode 10019 NO_MONEY"),
        ("fok_not_allowed", "FOK", "MT5 retcode 10030 INVALID_FILL"),
        ("market_closed", "GTC", "MT5 retcode 10018 MARKET_CLOSED"),
    ],
)
async def test_retcode_rejects_reject_the_order_with_the_reason(
    xm: Rig, mt5_stack: Mt5Stack, setup: str, tif: str, expected: str
) -> None:
    sym = xm.terminal.sym("EURUSD")
    if setup == "no_money":
        xm.terminal.balance = D("10")
    elif setup == "fok_not_allowed":
        sym.filling_mode = 2  # IOC only, and the client insists on FOK
    else:
        sym.market_open = False
    order = _order(xm, time_in_force=tif)
    _, handle = await mt5_stack.stack.submit(order)
    result = await mt5_stack.stack.result(handle)
    assert result.status is OrderStatus.REJECTED
    assert result.reason is not None and result.reason.startswith(expected), result.reason
    assert len(xm.terminal.sent) == 1 and not xm.terminal.deals


async def test_cancel_over_rest_removes_the_pending_order(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    order = _order(xm, type="LIMIT", price="1.08000")
    _, handle = await stack.submit(order)
    state = await stack.wait_for(handle, OrderStatus.ACCEPTED)
    resp = await xm.http.post(f"/api/v1/orders/{order.order_id}/cancel", json={"reason": "desk request"})
    assert resp.status_code == 202, resp.text
    result = await stack.result(handle)
    assert result.status is OrderStatus.CANCELED and result.breaks == []
    ticket = int(state.broker_order_id or 0)
    assert xm.terminal.history_orders[ticket].state == xm.terminal.ORDER_STATE_CANCELED
    assert [s["action"] for s in xm.terminal.sent] == [5, 8]  # PENDING, REMOVE
    await record_history(handle, "mt5-limit-canceled")


async def test_amend_modifies_the_price_in_place_and_refuses_a_new_volume(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    order = _order(xm, type="LIMIT", price="1.08000")
    _, handle = await stack.submit(order)
    state = await stack.wait_for(handle, OrderStatus.ACCEPTED)
    ticket = int(state.broker_order_id or 0)
    moved = await handle.execute_update(OrderWorkflow.amend, AmendRequest(price=D("1.08100")))
    assert moved.accepted and moved.price == D("1.08100"), moved.reason
    assert xm.terminal.orders[ticket].price_open == D("1.081")
    bigger = await handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D("20000")))
    assert not bigger.accepted and "cannot change the volume" in (bigger.reason or "")
    await xm.terminal.set_mid("EURUSD", D("1.08050"))
    result = await stack.result(handle)
    assert result.status is OrderStatus.FILLED and D(result.avg_price) == D("1.08051")
    assert result.breaks == []
    await record_history(handle, "mt5-amended-then-filled")


async def test_pending_order_expired_by_the_trade_server(xm: Rig, mt5_stack: Mt5Stack) -> None:
    from tests.harness import later

    stack = mt5_stack.stack
    order = _order(xm, type="LIMIT", price="1.08000", time_in_force="GTD", expire_at=later(3600))
    _, handle = await stack.submit(order)
    state = await stack.wait_for(handle, OrderStatus.ACCEPTED)
    ticket = int(state.broker_order_id or 0)
    [sent] = xm.terminal.sent
    assert sent["type_time"] == 2 and sent["expiration"] == int(order.expire_at.timestamp()) + 7200  # server time
    xm.terminal.expire_orders(now_server_s=xm.terminal.orders[ticket].time_expiration)
    result = await stack.result(handle)
    assert result.status is OrderStatus.EXPIRED
    await record_history(handle, "mt5-gtd-expired-by-server")


async def test_duplicate_polls_and_a_lost_poll_answer_execute_once(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.peer.lose_poll_responses = 2
    order = _order(xm)
    _, handle = await stack.submit(order)
    assert (await stack.result(handle)).status is OrderStatus.FILLED
    assert len(xm.terminal.sent) == 1
    [row] = await _fetch(
        mt5_stack, "SELECT deliveries FROM mt5_commands WHERE command_id = %s", f"{order.order_id}:NEW"
    )
    assert row["deliveries"] >= 3


async def test_ea_restart_mid_command_finds_the_order_instead_of_sending_it_again(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.peer.crash_after_send = "NEW"
    order = _order(xm, qty="40000")
    _, handle = await stack.submit(order)
    await _until(lambda: _dead(xm))
    assert xm.peer.state.commands[f"{order.order_id}:NEW"]["status"] == "IN_PROGRESS"
    await xm.restart_peer()  # same state file, new session
    result = await stack.result(handle)
    assert result.status is OrderStatus.FILLED and D(result.filled_qty) == D(40000) and result.breaks == []
    assert len(xm.terminal.sent) == 1  # executed once
    [row] = await _fetch(mt5_stack, "SELECT ack FROM mt5_commands WHERE command_id = %s", f"{order.order_id}:NEW")
    assert row["ack"]["recovered"] is True
    events = await _fetch(mt5_stack, "SELECT kind FROM mt5_account_events WHERE account = %s", xm.account)
    assert "EA_RESTARTED" in [e["kind"] for e in events]
    assert len(await _fetch(mt5_stack, "SELECT 1 FROM fills WHERE order_id = %s", order.order_id)) == 1


async def _dead(rig: Rig) -> bool:
    return rig.peer.dead


async def test_a_lost_acknowledgement_is_sent_again_and_the_order_executes_once(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    xm.peer.drop_acks = 1  # the first ack never reaches Exodus: the command is delivered again
    first = _order(xm)
    _, h1 = await stack.submit(first)
    assert (await stack.result(h1)).status is OrderStatus.FILLED
    xm.peer.lose_ack_responses = 1  # Exodus records the ack, the EA never sees the answer and resends it
    second = _order(xm, side="SELL")
    _, h2 = await stack.submit(second)
    assert (await stack.result(h2)).status is OrderStatus.FILLED
    assert len(xm.terminal.sent) == 2

    async def resent_ack_answered_duplicate() -> bool:
        # The EA resends the ack whose answer it lost on its next loop turn, which may come after the fill.
        acks = [r[2]["status"] for r in xm.peer.responses if r[0] == "/acks" and r[2]]
        return acks.count("DUPLICATE") >= 1

    await _until(resent_ack_answered_duplicate, timeout=30)
    assert len(xm.terminal.sent) == 2  # the resent ack executed nothing again


async def test_heartbeat_loss_refuses_new_orders_keeps_working_ones_and_reconciles_on_return(
    xm: Rig, mt5_stack: Mt5Stack
) -> None:
    stack = mt5_stack.stack
    resting = _order(xm, type="LIMIT", price="1.08000")
    _, h_resting = await stack.submit(resting)
    await stack.wait_for(h_resting, OrderStatus.ACCEPTED)

    await xm.stop_loop()
    xm.peer.offline = True  # the terminal's network is gone: nothing reaches Exodus
    async with stack.pool.connection() as conn:
        await conn.execute(
            "UPDATE mt5_accounts SET last_heartbeat_at = now() - interval '45 seconds' WHERE account = %s",
            (xm.account,),
        )
    await _until(lambda: _has_event(mt5_stack, xm.account, "DISCONNECTED"))  # the worker noticed
    decision, _ = await stack.submit(_order(xm))
    assert not decision.approved
    [reason] = decision.reasons
    assert (
        reason.field == "broker" and "has not sent a heartbeat" in reason.message and "disconnected" in reason.message
    )

    # Meanwhile at the terminal: the resting order fills, and someone trades by hand under the EA's magic.
    await xm.terminal.set_mid("EURUSD", D("1.07990"))
    xm.terminal.manual_trade("EURUSD", 0, D("0.05"), magic=MAGIC)
    assert (await stack.state(h_resting)).status is OrderStatus.ACCEPTED  # still in flight: nobody told Exodus

    xm.peer.offline = False
    await xm.peer.sync()  # queued deals first, then the heartbeat that reconnects and reconciles
    assert (await stack.result(h_resting)).status is OrderStatus.FILLED
    reply = [r[2] for r in xm.peer.responses if r[0] == "/heartbeat"][-1]
    assert reply["status"] == "RECONNECTED"
    assert reply["breaks"] == [
        f"POSITION_MISMATCH: account {xm.account} EURUSD: terminal 15000, ledger 10000"
        + (" (1 fill(s) in flight)" if "in flight" in reply["breaks"][0] else "")
    ]
    kinds = {
        b["kind"]
        for b in await _fetch(
            mt5_stack, "SELECT kind FROM reconciliation_breaks WHERE detail LIKE %s", f"%account {xm.account} %"
        )
    }
    assert kinds == {"UNMATCHED_DEAL", "POSITION_MISMATCH"}
    await xm.start_loop()
    decision, handle = await stack.submit(_order(xm))
    assert decision.approved  # back in business
    assert (await stack.result(handle)).status is OrderStatus.FILLED


async def _has_event(stack: Mt5Stack, account: str, kind: str) -> bool:
    rows = await _fetch(stack, "SELECT 1 FROM mt5_account_events WHERE account = %s AND kind = %s", account, kind)
    return bool(rows)


async def test_operator_cancel_while_the_ea_is_away_waits_for_it(xm: Rig, mt5_stack: Mt5Stack) -> None:
    stack = mt5_stack.stack
    order = _order(xm, type="LIMIT", price="1.08000")
    _, handle = await stack.submit(order)
    await stack.wait_for(handle, OrderStatus.ACCEPTED)
    await xm.stop_loop()  # the EA stalls (still heartbeating recently, but not polling)
    await handle.signal(OrderWorkflow.cancel, CancelRequest(requested_by="ops", reason="flatten"))
    await stack.wait_for(handle, OrderStatus.PENDING_CANCEL)
    await xm.start_loop()
    result = await stack.result(handle)
    assert result.status is OrderStatus.CANCELED
