"""The contract every broker adapter passes, against a local counterpart that speaks its real protocol.

An adapter's test module subclasses ``BrokerContract``; its ``conftest.py`` provides the fixtures:

* ``broker``: a started adapter whose reports go to ``reports``;
* ``reports``: a ``ReportCollector`` (the adapter's sink);
* ``market``: a ``MarketControl`` that moves the simulated market behind the broker;
* ``contract_instrument``: the ``Instrument`` the tests trade (its ``display_qty`` sets partial fills).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

from brokers.base import Broker
from core.domain import (
    CancelOrder,
    ExecutionReport,
    Instrument,
    OrderSide,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)

__all__ = ["BrokerContract", "MarketControl", "ReportCollector"]


class MarketControl(Protocol):
    """Moves the simulated market behind a broker."""

    async def set_mid(self, symbol: str, mid: Decimal) -> None:
        """Put the mid price somewhere and match resting orders."""
        ...

    async def step(self) -> None:
        """Match resting orders once more at the current price."""
        ...


class ReportCollector:
    """A report sink that remembers what it got."""

    def __init__(self) -> None:
        self.reports: list[ExecutionReport] = []
        self._changed = asyncio.Event()

    async def __call__(self, report: ExecutionReport) -> None:
        self.reports.append(report)
        self._changed.set()

    def of(self, client_order_id: str) -> list[ExecutionReport]:
        """Reports of one order (any id of its replace chain that starts with ``client_order_id``)."""
        base = client_order_id.split(".")[0]
        return [r for r in self.reports if r.client_order_id.split(".")[0] == base]

    async def wait_for(self, predicate: Callable[[list[ExecutionReport]], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self.reports)`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.reports):
                self._changed.clear()
                await self._changed.wait()


def _cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


class BrokerContract:
    """Behaviour every adapter shares."""

    def _order(
        self,
        inst: Instrument,
        *,
        qty: Decimal,
        type: OrderType = OrderType.MARKET,
        price: Decimal | None = None,
        side: OrderSide = OrderSide.BUY,
        tif: TimeInForce = TimeInForce.GTC,
        cid: str | None = None,
    ) -> SubmitOrder:
        return SubmitOrder(
            client_order_id=cid or _cid(),
            account="contract",
            symbol=inst.symbol,
            side=side,
            type=type,
            time_in_force=tif,
            qty=qty,
            price=price,
        )

    async def test_market_order_is_acknowledged_and_filled(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        order = self._order(inst, qty=inst.min_qty)
        ack = await broker.submit_order(order)
        assert ack.accepted, ack.reason
        await reports.wait_for(lambda _: any(r.kind is ReportKind.FILL for r in reports.of(order.client_order_id)))
        fills = [r for r in reports.of(order.client_order_id) if r.kind is ReportKind.FILL]
        assert sum(f.last_qty for f in fills) == order.qty
        assert all(f.last_price and f.last_price > 0 for f in fills)
        status = await broker.get_order_status(order.client_order_id)
        assert status is not None and status.status is OrderStatus.FILLED and status.cum_qty == order.qty

    async def test_resting_limit_order_can_be_canceled(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        far = inst.round_price(inst.initial_price * Decimal("0.9"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=far)
        assert (await broker.submit_order(order)).accepted
        status = await broker.get_order_status(order.client_order_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED and status.cum_qty == 0
        cancel = await broker.cancel_order(
            CancelOrder(client_order_id=order.client_order_id, symbol=inst.symbol, side=order.side, qty=order.qty)
        )
        assert cancel.accepted, cancel.reason
        await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(order.client_order_id)))
        status = await broker.get_order_status(order.client_order_id)
        assert status is not None and status.status is OrderStatus.CANCELED

    async def test_large_order_fills_in_pieces(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        qty = inst.display_qty * 2 + inst.min_qty
        order = self._order(
            inst, qty=qty, type=OrderType.LIMIT, price=inst.round_price(inst.initial_price * Decimal("1.01"))
        )
        assert (await broker.submit_order(order)).accepted
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

    async def test_invalid_quantity_is_rejected(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        order = self._order(inst, qty=inst.max_qty + inst.lot_step)
        ack = await broker.submit_order(order)
        assert not ack.accepted and ack.reason
        status = await broker.get_order_status(order.client_order_id)
        assert status is None or status.status is OrderStatus.REJECTED

    async def test_unknown_order_has_no_status_and_cannot_be_canceled(
        self, broker: Broker, contract_instrument: Instrument
    ) -> None:
        cid = _cid()
        assert await broker.get_order_status(cid) is None
        ack = await broker.cancel_order(
            CancelOrder(
                client_order_id=cid,
                symbol=contract_instrument.symbol,
                side=OrderSide.BUY,
                qty=contract_instrument.min_qty,
            )
        )
        assert not ack.accepted and ack.not_found

    async def test_replace_changes_quantity_and_price(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        price = inst.round_price(inst.initial_price * Decimal("0.9"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=price)
        assert (await broker.submit_order(order)).accepted
        new_price = price + inst.tick_size
        new_qty = inst.min_qty * 2
        ack = await broker.replace_order(
            ReplaceOrder(
                orig_client_order_id=order.client_order_id,
                client_order_id=f"{order.client_order_id}.1",
                symbol=inst.symbol,
                side=order.side,
                type=order.type,
                time_in_force=order.time_in_force,
                qty=new_qty,
                price=new_price,
            )
        )
        assert ack.accepted, ack.reason
        await reports.wait_for(lambda _: any(r.kind is ReportKind.REPLACED for r in reports.of(order.client_order_id)))
        status = await broker.get_order_status(f"{order.client_order_id}.1")
        assert status is not None and status.qty == new_qty and status.price == new_price

    async def test_resubmitting_a_client_order_id_does_not_create_a_second_order(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        far = inst.round_price(inst.initial_price * Decimal("0.9"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=far)
        assert (await broker.submit_order(order)).accepted
        again = await broker.submit_order(order)
        assert not again.accepted
        status = await broker.get_order_status(order.client_order_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED  # the original is untouched
        opens = [o for o in await broker.open_orders() if o.client_order_id == order.client_order_id]
        assert len(opens) == 1
