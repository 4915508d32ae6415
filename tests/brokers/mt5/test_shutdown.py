"""Stopping the MT5 broker and the EA peer cannot hang (the teardown hang of the MT5 tests).

The cause: ``Mt5Broker``'s housekeeping loop waited for its wake-up with ``asyncio.wait_for``, and on Python 3.11
``wait_for`` returns the inner result, swallowing the cancel, when the cancel lands while the wake-up completes
(a NOTIFY from the EA's last acknowledgement arriving as the test tears the broker down). The loop then ran on
and ``close()`` awaited it forever. Each test here makes that moment happen on purpose and bounds the wait, so
that without the fix it fails in seconds instead of hanging.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.mt5.execution import Mt5Broker
from core.domain import OrderSide, OrderType, SubmitOrder, TimeInForce
from core.instruments import InstrumentCatalog
from core.tasks import stop_tasks
from tests.brokers.contract import ReportCollector
from tests.brokers.mt5.conftest import Rig, bridge_settings, new_account
from tests.harness import unique

pytestmark = pytest.mark.asyncio

BOUND = 15.0


async def _parked(waitable: asyncio.Event | asyncio.Condition) -> None:
    """Until a task waits on ``waitable`` (the housekeeping loop between two rounds, a call awaiting its ack)."""
    async with asyncio.timeout(BOUND):
        while not waitable._waiters:  # type: ignore[attr-defined]
            await asyncio.sleep(0.005)


async def _bounded(what: str, coro: Any) -> None:
    task = asyncio.create_task(coro)
    done, _ = await asyncio.wait({task}, timeout=BOUND)
    if not done:
        await stop_tasks([task], what="test cleanup", grace=5)
        pytest.fail(f"{what} did not finish within {BOUND:g} s: it hangs")
    await task


@pytest.fixture
async def started(database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> Any:
    """A factory of started brokers (whatever a test leaves running is stopped afterwards)."""
    brokers: list[Mt5Broker] = []

    async def start() -> Mt5Broker:
        # Rounds far apart: between two of them the loop is parked on its wake-up, as it mostly is.
        settings = bridge_settings(database_url, [new_account()], housekeeping_interval_seconds=60)
        broker = Mt5Broker(pool, settings.mt5, database_url=database_url, instruments=instruments)
        await broker.start(ReportCollector())
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        await stop_tasks(broker._tasks, what="test cleanup", grace=5)
        if broker.delivery is not None:  # its outbox's tasks
            await broker.delivery.stop()


def _housekeeping(broker: Mt5Broker) -> asyncio.Task[None]:
    return next(t for t in broker._tasks if t.get_name() == "mt5-housekeeping")


async def test_housekeeping_honours_a_cancel_that_lands_as_it_wakes(started: Any) -> None:
    for _ in range(5):
        broker = await started()
        housekeeping = _housekeeping(broker)
        await _parked(broker._wake)
        broker._wake.set()  # a report NOTIFY arrives ...
        housekeeping.cancel()  # ... in the same loop iteration as the shutdown's cancel
        done, _ = await asyncio.wait({housekeeping}, timeout=BOUND)
        assert done, "the housekeeping loop swallowed its cancel and ran on"
        assert housekeeping.cancelled()


async def test_close_returns_when_a_report_wakes_the_broker_as_it_closes(started: Any) -> None:
    for _ in range(5):
        broker = await started()
        await _parked(broker._wake)
        broker._wake.set()
        await _bounded("Mt5Broker.close()", broker.close())
        assert broker._tasks == [] and broker.delivery is None


async def test_a_call_waiting_for_its_acknowledgement_honours_a_cancel(
    rig: Rig, pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str
) -> None:
    # _await waits on the acknowledgement condition the same way: cancelled as a NOTIFY wakes it, the call
    # must end cancelled, not run on until the acknowledgement timeout and fail as an unknown outcome.
    broker = Mt5Broker(pool, rig.settings.mt5, database_url=database_url, instruments=instruments)
    await broker.start(ReportCollector())
    try:
        inst = instruments.get("EURUSD")
        assert inst is not None
        order = SubmitOrder(
            cl_ord_id=unique("co"),
            account=rig.account,
            symbol=inst.symbol,
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=inst.min_qty,
            price=inst.round_price(inst.initial_price * Decimal("0.9")),
        )
        waiting = asyncio.create_task(broker.submit_order(order))  # nobody polls: it waits for the ack
        await _parked(broker._changed)
        async with broker._changed:
            broker._changed.notify_all()
        waiting.cancel()
        done, _ = await asyncio.wait({waiting}, timeout=BOUND)
        assert done and waiting.cancelled(), waiting
    finally:
        await _bounded("Mt5Broker.close()", broker.close())


async def test_the_ea_peer_stops_even_if_a_round_swallows_its_cancel(rig: Rig) -> None:
    # A round that swallows the cancel once, as a round waiting for a free pool connection can (psycopg_pool
    # waits with wait_for): the peer's loop must still end.
    peer = rig.peer
    real_tick = peer.tick
    rounds = 0
    swallowed = asyncio.Event()

    async def tick() -> None:
        nonlocal rounds
        rounds += 1
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if swallowed.is_set():
                raise
            swallowed.set()
        await real_tick()

    peer.tick = tick  # type: ignore[method-assign]

    async def run_and_stop() -> None:
        async with peer.running(0.01):
            while rounds < 2:
                await asyncio.sleep(0.01)

    await _bounded("EaPeer.running() exit", run_and_stop())
    assert swallowed.is_set()
