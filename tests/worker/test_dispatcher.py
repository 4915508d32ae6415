"""The report dispatcher: reports for closed orders, already booked or not."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain import ReportKind
from tests.harness import Stack, make_order
from worker.dispatcher import ReportDispatcher

pytestmark = pytest.mark.asyncio

D = Decimal


async def test_a_late_repeat_of_a_booked_fill_is_no_break_but_an_unknown_fill_is(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    order = make_order(symbol="AAPL", qty="10")
    _, handle = await stack.submit(order)
    await handle.result()  # filled, booked, closed
    venue_view = await stack.venue.status(order.order_id)
    assert venue_view is not None
    [fill] = [r for r in venue_view.reports if r.kind is ReportKind.FILL]
    dispatcher = ReportDispatcher(stack.client, stack.pool)

    await dispatcher(fill)  # the broker (or our outbox after a crash) sends it again after the order closed
    stray = fill.model_copy(update={"exec_id": f"{fill.exec_id}-stray\x00"})
    await dispatcher(stray)  # a fill the order never had

    breaks = await stack.fetch(
        "SELECT kind, detail FROM reconciliation_breaks WHERE order_id = %s ORDER BY id", order.order_id
    )
    assert [b["kind"] for b in breaks] == ["UNMATCHED_FILL"]
    assert f"{fill.exec_id}-stray\u2400" in breaks[0]["detail"]
    unmatched = await stack.fetch(
        "SELECT exec_id FROM unmatched_reports WHERE client_order_id = %s", fill.client_order_id
    )
    assert [u["exec_id"] for u in unmatched] == [f"{fill.exec_id}-stray\u2400"]
    assert len(await stack.fetch("SELECT 1 FROM fills WHERE order_id = %s", order.order_id)) == 1
