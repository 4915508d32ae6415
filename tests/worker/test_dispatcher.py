"""The report dispatcher: reports for closed orders, already booked or not."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain import ExecutionReport, OrderRequest, ReportKind
from tests.harness import Stack, make_order
from worker.dispatcher import ReportDispatcher

pytestmark = pytest.mark.asyncio

D = Decimal


async def _filled_and_closed(stack: Stack) -> tuple[OrderRequest, ExecutionReport]:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="10")
    _, handle = await stack.submit(order)
    await handle.result()  # filled, booked, closed
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None
    [fill] = [r for r in venue_view.reports if r.kind is ReportKind.FILL]
    return order, fill


async def _breaks(stack: Stack, order_id: str) -> list[dict]:
    return await stack.fetch("SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s ORDER BY id", order_id)


async def test_a_late_repeat_of_a_fill_its_order_booked_is_no_break(stack: Stack) -> None:
    order, fill = await _filled_and_closed(stack)
    # The broker (or our outbox after a crash) sends the fill again after the order closed.
    await ReportDispatcher(stack.client, stack.pool)(fill)
    assert await _breaks(stack, order.order_id) == []
    assert await stack.fetch("SELECT 1 FROM unmatched_reports WHERE exec_id = %s", fill.exec_id) == []
    assert len(await stack.fetch("SELECT 1 FROM fills WHERE order_id = %s", order.order_id)) == 1


async def test_a_fill_the_closed_order_never_had_is_a_break_whatever_its_text(stack: Stack) -> None:
    order, fill = await _filled_and_closed(stack)
    stray = fill.model_copy(update={"exec_id": f"{fill.exec_id}-stray\x00", "reason": "odd\x00"})
    await ReportDispatcher(stack.client, stack.pool)(stray)
    breaks = await _breaks(stack, order.order_id)
    assert [b["kind"] for b in breaks] == ["UNMATCHED_FILL"]
    assert f"{fill.exec_id}-stray\u2400" in breaks[0]["detail"]
    [unmatched] = await stack.fetch(
        "SELECT exec_id, report->>'reason' AS reason FROM unmatched_reports WHERE client_order_id = %s",
        fill.cl_ord_id,
    )
    assert unmatched == {"exec_id": f"{fill.exec_id}-stray\u2400", "reason": "odd\u2400"}


async def test_a_late_repeat_of_an_acknowledgement_its_order_took_is_not_unmatched(stack: Stack) -> None:
    # An order settled by its fill report closes without a status round trip, so the venue's repeat of the
    # acknowledgement that also rode in the submission's answer may arrive after it closed.
    order, fill = await _filled_and_closed(stack)
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None
    [ack] = [r for r in venue_view.reports if r.kind is ReportKind.ACCEPTED]
    dispatch = ReportDispatcher(stack.client, stack.pool)
    await dispatch(ack)
    assert await stack.fetch("SELECT 1 FROM unmatched_reports WHERE exec_id = %s", ack.exec_id) == []
    # One the order never took is still kept for an operator.
    stray = ack.model_copy(update={"exec_id": f"{ack.exec_id}-stray"})
    await dispatch(stray)
    assert len(await stack.fetch("SELECT 1 FROM unmatched_reports WHERE exec_id = %s", stray.exec_id)) == 1
    assert await _breaks(stack, order.order_id) == []
