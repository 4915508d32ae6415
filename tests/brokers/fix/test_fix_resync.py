"""The resync after a logon asks again when a status request goes unanswered.

Under load the adapter's status requests can leave before the venue has asked for the resend of what it missed;
the venue queues them, and the adapter (which keeps no sent messages) answers the resend with a gap fill over
them, so they are never processed. Here the venue loses the first status request of each order on purpose.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import OrderSide, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.fix.kit import eventually, running_pair

pytestmark = pytest.mark.asyncio

D = Decimal


async def test_a_status_request_lost_after_logon_is_asked_again(
    tmp_path: Path, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> None:
    async with running_pair(
        tmp_path, pool, instruments, sink=reports, venue_options={"persist_messages": False}, request_timeout_seconds=1
    ) as pair:
        venue, broker = pair.venue, pair.broker
        await venue.set_mid("AAPL", D("190.00"))
        order = SubmitOrder(
            cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
            account="acc-1",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(1000),
            price=D("185.00"),
        )
        assert (await broker.submit_order(order)).accepted
        venue.faults.refuse_logons = True
        await venue.drop()
        await eventually(lambda: not broker.logged_on)
        await venue.set_mid("AAPL", D("184.00"))  # 500 fill while down; the venue keeps no messages to resend
        await venue.step()  # 1000

        answer, lost = venue._status, []

        async def loses_the_first(msg: object) -> None:
            if not lost:
                lost.append(msg)  # never answered, as when the adapter's gap fill covered it
                return
            await answer(msg)  # type: ignore[arg-type]

        venue._status = loses_the_first  # type: ignore[method-assign]
        venue.faults.refuse_logons = False
        await broker.wait_logged_on(30)
        await asyncio.wait_for(broker.resynced.wait(), 30)
        assert len(lost) == 1
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.cl_ord_id)), 30)
        fills = [r for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
        assert [(f.last_qty, f.cum_qty) for f in fills] == [(D(1000), D(1000))]
