"""Reports the submission's answer carried are not signaled again (activities/answered.py, issue 18)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal as D

from temporalio.api.enums.v1 import EventType

from activities.answered import AnsweredReports
from core.domain import BrokerAck, ExecutionReport, OrderSide, OrderStatus, ReportKind
from tests.harness import Stack, make_order
from tests.worker.test_sweep import history_events
from tests.workflows.recording import record_history


def _report(exec_id: str, cl_ord_id: str = "O1") -> ExecutionReport:
    return ExecutionReport(
        exec_id=exec_id,
        cl_ord_id=cl_ord_id,
        broker="paper",
        kind=ReportKind.ACCEPTED,
        symbol="AAPL",
        side=OrderSide.BUY,
        leaves_qty=D(1),
        transact_at=datetime.now(UTC),
    )


async def test_a_report_waits_for_the_answer_in_flight_and_is_dropped_only_if_it_carried_it() -> None:
    answered = AnsweredReports(wait_seconds=5)
    carried, other = _report("E1"), _report("E2")
    async with answered.submitting("paper", "O1") as note:
        checks = [asyncio.create_task(answered.carried(r)) for r in (carried, other)]
        await asyncio.sleep(0.05)
        assert not any(c.done() for c in checks)  # held until the answer is in
        note(BrokerAck(accepted=True, cl_ord_id="O1", reports=[carried]))
    assert [await c for c in checks] == [True, False]
    assert await answered.carried(carried)  # landing after the answer
    assert not await answered.carried(_report("E1", "O2"))  # another order


async def test_a_market_order_filled_in_the_answer_gets_no_repeated_signal(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="4")
    _, handle = await stack.submit(order)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is OrderStatus.FILLED
    events = await history_events(handle)
    signals = [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert signals == [], [s.workflow_execution_signaled_event_attributes.signal_name for s in signals]
    assert len(events) <= 18, [EventType.Name(e.event_type) for e in events]
    rows = await stack.fetch("SELECT qty FROM fills WHERE order_id = %s", order.order_id)
    assert [r["qty"] for r in rows] == [D(4)]
    await record_history(handle, "paper-market-filled-answer-only-lean")
