"""The MT5 broker passes the broker contract and the resilience contract against the EA peer and a simulated XM
terminal. Where MT5 differs, the contract branches on its capabilities: a buy limit above the ask is refused by MT5
(10015), so limit orders rest and the market comes to them, and a replace changes prices only (MT5 cannot change the
volume of a working order). Its resilience cases are acknowledgements that come after the adapter stopped waiting
(the terminal executed the command), its records failing, and restarts; a bridge has no 5xx or throttle.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from brokers.base import Broker, ReportSink
from brokers.mt5.execution import Mt5Broker
from core.domain import Instrument, OrderSide, OrderType, ReplaceOrder, ReportKind, SubmitOrder, TimeInForce
from tests.brokers.contract import BrokerContract, ReportCollector, ResilienceContract, _cid
from tests.brokers.mt5.conftest import Rig
from tests.brokers.mt5.fake_terminal import FakeTerminal
from tests.brokers.storage import FailingPool

pytestmark = pytest.mark.asyncio

D = Decimal


class Mt5Faults:
    """``FaultControl`` over the EA peer: the terminal executes, and its acknowledgement comes late."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig

    def offers(self, kind: str, op: str = "") -> bool:
        if kind == "restart":
            return True
        # A bridge command is either acknowledged or still queued: the lookup finds it either way, so there is no
        # "refused before anything" that leaves the order unknown; and there is no throttle answer.
        return kind in ("lose_answer", "stall") and op in ("submit", "cancel", "replace")

    def _hold_acks(self) -> None:
        """The EA executes what it polls but its acknowledgements leave only after the adapter stopped waiting."""
        peer = self.rig.peer
        until = time.monotonic() + self.rig.settings.mt5.ack_wait_seconds + 1
        send = peer._send_ack

        async def late(command_id: str) -> None:
            if time.monotonic() < until:
                return  # unsent: the EA sends it again on a later round
            await send(command_id)

        peer._send_ack = late  # type: ignore[method-assign]

    def lose_answer(self, op: str) -> None:
        self._hold_acks()

    def stall(self, op: str) -> None:
        self._hold_acks()

    def fail_before(self, op: str, times: int = 1) -> None:
        raise NotImplementedError

    def throttle(self, requests: int, per_seconds: float) -> None:
        raise NotImplementedError

    @property
    def throttled(self) -> int:
        return 0

    async def restart(self, sink: ReportSink) -> Broker:
        rig = self.rig
        await rig.broker.close()
        broker = Mt5Broker(
            rig.storage, rig.settings.mt5, database_url=rig.settings.require_database_url(), instruments=None
        )
        await broker.start(sink)
        rig.broker = broker
        return broker


@pytest.fixture
def faults(mt5_rig: Rig) -> Mt5Faults:
    return Mt5Faults(mt5_rig)


@pytest.fixture
def storage(mt5_rig: Rig) -> FailingPool:
    assert isinstance(mt5_rig.storage, FailingPool)
    return mt5_rig.storage


class TestMt5Broker(BrokerContract):
    pass


class TestMt5Resilience(ResilienceContract):
    pass


async def test_a_modify_changes_the_working_order_in_place(
    broker: Broker, reports: ReportCollector, market: FakeTerminal, contract_instrument: Instrument, mt5_rig: Rig
) -> None:
    inst = contract_instrument
    await market.set_mid(inst.symbol, inst.initial_price)
    price = inst.round_price(inst.initial_price * D("0.9"))
    order = SubmitOrder(
        cl_ord_id=_cid(),
        account=mt5_rig.account,
        symbol=inst.symbol,
        side=OrderSide.BUY,
        type=OrderType.LIMIT,
        time_in_force=TimeInForce.GTC,
        qty=inst.min_qty,
        price=price,
    )
    assert (await broker.submit_order(order)).accepted
    replace = ReplaceOrder(
        orig_cl_ord_id=order.cl_ord_id,
        cl_ord_id=f"{order.cl_ord_id}.1",
        symbol=inst.symbol,
        side=order.side,
        type=order.type,
        time_in_force=order.time_in_force,
        qty=inst.min_qty,
        price=price + inst.tick_size,
    )
    refused = await broker.replace_order(replace.model_copy(update={"qty": inst.min_qty * 2}))
    assert not refused.accepted and "cannot change the volume" in (refused.reason or "")
    assert (await broker.replace_order(replace)).accepted
    await reports.wait_for(lambda _: any(r.kind is ReportKind.REPLACED for r in reports.of(order.cl_ord_id)))
    status = await broker.get_order_status(replace.cl_ord_id)
    assert status is not None
    [working] = market.orders.values()
    assert D(str(working.price_open)) == price + inst.tick_size  # modified in place: same ticket
    assert str(working.ticket) == status.broker_order_id
