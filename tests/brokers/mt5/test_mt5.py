"""The MT5 broker passes the broker contract against the EA peer and a simulated XM terminal.

Two contract tests are replaced where MT5 semantics differ: a buy limit above the ask is refused by MT5
(10015), so "fills in pieces" rests the order and brings the market to it; and MT5 cannot change the
volume of a working order, so "replace" changes the price and checks that a new volume is refused.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from brokers.base import Broker
from core.domain import Instrument, OrderType, ReplaceOrder, ReportKind, SubmitOrder
from tests.brokers.contract import BrokerContract, ReportCollector
from tests.brokers.mt5.conftest import Rig
from tests.brokers.mt5.fake_terminal import FakeTerminal

pytestmark = pytest.mark.asyncio

D = Decimal


class TestMt5Broker(BrokerContract):
    @pytest.fixture(autouse=True)
    def _account(self, mt5_rig: Rig) -> None:
        self.account = mt5_rig.account

    def _order(self, inst: Instrument, **kw: object) -> SubmitOrder:  # type: ignore[override]
        return super()._order(inst, **kw).model_copy(update={"account": self.account})  # type: ignore[arg-type]

    async def test_large_order_fills_in_pieces(  # type: ignore[override]
        self, broker: Broker, reports: ReportCollector, market: FakeTerminal, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        sym = market.sym(inst.symbol)
        sym.liquidity = inst.display_qty / sym.contract_size  # 10 lots per deal
        await market.set_mid(inst.symbol, inst.initial_price)
        qty = inst.display_qty * 2 + inst.min_qty
        price = inst.round_price(inst.initial_price * D("0.99"))
        order = self._order(inst, qty=qty, type=OrderType.LIMIT, price=price)
        assert (await broker.submit_order(order)).accepted
        await market.set_mid(inst.symbol, price - inst.tick_size * 5)
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.client_order_id)))
        first = [r for r in reports.of(order.client_order_id) if r.kind is ReportKind.FILL]
        assert first[0].last_qty == inst.display_qty and first[0].leaves_qty == qty - inst.display_qty
        for _ in range(2):
            await market.step()
        await reports.wait_for(
            lambda _: sum(r.last_qty for r in reports.of(order.client_order_id) if r.kind is ReportKind.FILL) == qty
        )
        fills = [r for r in reports.of(order.client_order_id) if r.kind is ReportKind.FILL]
        assert len(fills) == 3 and fills[-1].cum_qty == qty and fills[-1].leaves_qty == 0
        assert len({f.exec_id for f in fills}) == 3
        assert all(f.last_price is not None and f.last_price <= price for f in fills)

    async def test_replace_changes_quantity_and_price(  # type: ignore[override]
        self, broker: Broker, reports: ReportCollector, market: FakeTerminal, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        price = inst.round_price(inst.initial_price * D("0.9"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=price)
        assert (await broker.submit_order(order)).accepted
        replace = ReplaceOrder(
            orig_client_order_id=order.client_order_id,
            client_order_id=f"{order.client_order_id}.1",
            symbol=inst.symbol,
            side=order.side,
            type=order.type,
            time_in_force=order.time_in_force,
            qty=inst.min_qty * 2,
            price=price + inst.tick_size,
        )
        refused = await broker.replace_order(replace)
        assert not refused.accepted and "cannot change the volume" in (refused.reason or "")
        ack = await broker.replace_order(replace.model_copy(update={"qty": inst.min_qty}))
        assert ack.accepted, ack.reason
        await reports.wait_for(lambda _: any(r.kind is ReportKind.REPLACED for r in reports.of(order.client_order_id)))
        status = await broker.get_order_status(f"{order.client_order_id}.1")
        assert status is not None and status.price == price + inst.tick_size
        assert status.client_order_id == f"{order.client_order_id}.1"
        [working] = market.orders.values()
        assert D(str(working.price_open)) == price + inst.tick_size  # modified in place: same ticket
        assert str(working.ticket) == status.broker_order_id
