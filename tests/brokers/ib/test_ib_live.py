"""Opt-in smoke test against a real paper TWS or IB Gateway: ``IB_LIVE=1`` (and ``IB_HOST``, ``IB_PORT``,
``IB_CLIENT_ID``, ``IB_ACCOUNT``, ``IB_SYMBOL``). Skipped by default: nothing here can reach IB.

It connects, places one limit order 20% below the market (it rests), finds it by orderRef, cancels it, and sees
the cancel booked: the adapter against IB's own TWS rather than the local venue.
"""

from __future__ import annotations

import os
import uuid
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import CancelOrder, OrderSide, OrderStatus, OrderType, ReportKind, SubmitOrder, TimeInForce
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector

pytestmark = pytest.mark.skipif(os.environ.get("IB_LIVE") != "1", reason="IB_LIVE=1 runs it against a paper TWS")


async def test_a_resting_order_at_a_paper_tws_is_found_by_order_ref_and_canceled(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> None:
    from brokers.ib.execution import IBBroker
    from core.settings import IBSettings

    settings = IBSettings(
        host=os.environ.get("IB_HOST", "127.0.0.1"),
        port=int(os.environ.get("IB_PORT", "7497")),
        client_id=int(os.environ.get("IB_CLIENT_ID", "917")),
        account=os.environ.get("IB_ACCOUNT", ""),
        quote_interval_ms=0,
    )
    reports = ReportCollector()
    broker = IBBroker(settings, pool=pool, name=f"ib-live-{uuid.uuid4().hex[:6]}", instruments=instruments)
    await broker.start(reports)
    try:
        await broker.caught_up.wait()
        price = Decimal(os.environ.get("IB_LIMIT_PRICE", "1.00"))
        order = SubmitOrder(
            cl_ord_id="EX" + uuid.uuid4().hex[:16].upper(),
            account=broker.account,
            symbol=os.environ.get("IB_SYMBOL", "AAPL"),
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.DAY,
            qty=Decimal(1),
            price=price,
        )
        ack = await broker.submit_order(order)
        assert ack.accepted, ack.reason
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED
        cancel = await broker.cancel_order(
            CancelOrder(cl_ord_id=order.cl_ord_id, symbol=order.symbol, side=order.side, qty=order.qty)
        )
        assert cancel.accepted, cancel.reason
        await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(order.cl_ord_id)))
    finally:
        await broker.close()
