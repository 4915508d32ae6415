"""Postgres failing under the MT5 adapter: every call surfaces it as ``BrokerUnavailable`` (an unknown outcome,
never a refusal), and once Postgres is back the order's status decides, without a second send."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.mt5.execution import Mt5Broker
from core.domain import (
    CancelOrder,
    OrderSide,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    SubmitOrder,
    TimeInForce,
    derive_order_id,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from tests.brokers.contract import ReportCollector
from tests.brokers.mt5.conftest import Rig
from tests.brokers.storage import FailingPool

pytestmark = pytest.mark.asyncio

D = Decimal


@pytest.fixture
async def flaky(
    rig: Rig, pool: AsyncConnectionPool, database_url: str, instruments: InstrumentCatalog
) -> AsyncIterator[tuple[Mt5Broker, FailingPool]]:
    """The rig's account served by an MT5 broker whose Postgres fails on demand."""
    failing = FailingPool(pool)
    broker = Mt5Broker(failing, rig.settings.mt5, database_url=database_url, instruments=instruments)  # type: ignore[arg-type]
    await broker.start(ReportCollector())
    try:
        yield broker, failing
    finally:
        await broker.close()


def _order(rig: Rig, **kw: Any) -> SubmitOrder:
    fields: dict[str, Any] = {
        "client_order_id": derive_order_id(uuid.uuid4().hex),
        "account": rig.account,
        "symbol": "EURUSD",
        "side": OrderSide.BUY,
        "type": OrderType.MARKET,
        "time_in_force": TimeInForce.GTC,
        "qty": D("10000"),
    }
    fields.update(kw)
    return SubmitOrder(**fields)


async def test_every_call_while_postgres_is_down_is_broker_unavailable(
    rig: Rig, flaky: tuple[Mt5Broker, FailingPool]
) -> None:
    broker, failing = flaky
    order = _order(rig, type=OrderType.LIMIT, price=D("1.08000"))
    failing.down = True
    cid = order.cl_ord_id
    calls = {
        "submit_order": lambda: broker.submit_order(order),
        "cancel_order": lambda: broker.cancel_order(
            CancelOrder(cl_ord_id=cid, symbol="EURUSD", side=OrderSide.BUY, qty=order.qty)
        ),
        "replace_order": lambda: broker.replace_order(
            ReplaceOrder(
                cl_ord_id=f"{cid}.1",
                orig_cl_ord_id=cid,
                symbol="EURUSD",
                side=OrderSide.BUY,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                qty=order.qty,
                price=D("1.07000"),
            )
        ),
        "get_order_status": lambda: broker.get_order_status(cid),
        "open_orders": broker.open_orders,
        "fills_since": lambda: broker.fills_since(datetime(2020, 1, 1, tzinfo=UTC)),
        "positions": broker.positions,
        "drain": broker.drain,
    }
    for name, call in calls.items():
        with pytest.raises(BrokerUnavailable, match="storage failed") as caught:
            await call()
        assert isinstance(caught.value.__cause__, psycopg.OperationalError), name
    assert failing.failures >= len(calls)
    failing.down = False
    assert await broker.get_order_status(cid) is None  # the failed submit queued nothing
    assert rig.terminal.sent == []


async def test_postgres_failing_while_a_submit_waits_leaves_it_in_flight_and_the_status_decides(
    rig: Rig, flaky: tuple[Mt5Broker, FailingPool]
) -> None:
    broker, failing = flaky
    order = _order(rig)
    # The NEW command is queued (committed); then Postgres goes away while the call waits for its acknowledgement.
    failing.fail_on = lambda sql: "FROM mt5_commands WHERE command_id" in sql
    with pytest.raises(BrokerUnavailable, match="storage failed") as caught:
        await broker.submit_order(order)
    assert isinstance(caught.value.__cause__, psycopg.errors.AdminShutdown)
    failing.fail_on = None
    # Postgres is back: the EA executes the one command; the activity asks for the status before anything else.
    await rig.peer.sync()
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED
    assert len(rig.terminal.sent) == 1  # sent once
    again = await broker.submit_order(order)  # a blind resend would be refused, never sent twice
    assert not again.accepted and again.reason is not None and again.reason.startswith("DUPLICATE")
    assert len(rig.terminal.sent) == 1


async def test_postgres_down_when_the_adapter_starts_is_broker_unavailable(
    rig: Rig, pool: AsyncConnectionPool, database_url: str, instruments: InstrumentCatalog
) -> None:
    failing = FailingPool(pool)
    failing.down = True
    broker = Mt5Broker(failing, rig.settings.mt5, database_url=database_url, instruments=instruments)  # type: ignore[arg-type]
    try:
        with pytest.raises(BrokerUnavailable, match="storage failed"):
            await broker.start(ReportCollector())
    finally:
        await broker.close()
