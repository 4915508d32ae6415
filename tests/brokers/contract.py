"""The contract every broker adapter passes, against a local counterpart that speaks its real protocol.

An adapter's test module subclasses ``BrokerContract`` and ``ResilienceContract``; its ``conftest.py`` provides the
fixtures:

* ``broker``: a started adapter whose reports go to ``reports``;
* ``reports``: a ``ReportCollector`` (the adapter's sink);
* ``market``: a ``MarketControl`` that moves the simulated market behind the broker;
* ``contract_instrument``: the ``Instrument`` the tests trade (its ``display_qty`` sets partial fills);
* ``contract_account`` (default ``"contract"``): the account orders name;
* ``faults``: a ``FaultControl`` over the counterpart (what it ``offers`` selects the resilience cases);
* ``storage`` (optional): a ``StorageControl`` that makes the adapter's own records fail.

Cases are selected by the broker's capabilities (order types, times in force, whether a limit order priced through
the market executes, whether a replace may change the quantity, whether the broker throttles) and by the faults its
counterpart can inject; a case that does not apply is skipped with the reason. ``UnwrittenContract`` is what an
adapter copied from ``brokers/_template/`` passes before it is written (``tests/brokers/_template/``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import pytest

from brokers.base import BROKER_CALLS, Broker, BrokerSpec, ReportSink
from core.domain import (
    CancelOrder,
    ExecutionReport,
    Instrument,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    OrderType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
)
from core.errors import BrokerUnavailable

__all__ = [
    "BrokerContract",
    "FaultControl",
    "MarketControl",
    "ReportCollector",
    "ResilienceContract",
    "StorageControl",
    "UnwrittenContract",
]


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

    def of(self, cl_ord_id: str) -> list[ExecutionReport]:
        """Reports of one order (any id of its replace chain that starts with ``cl_ord_id``)."""
        base = cl_ord_id.split(".")[0]
        return [r for r in self.reports if r.cl_ord_id.split(".")[0] == base]

    def of_kind(self, cl_ord_id: str, kind: ReportKind) -> list[ExecutionReport]:
        """Reports of one order (as :meth:`of`) that are of ``kind``."""
        return [r for r in self.of(cl_ord_id) if r.kind is kind]

    async def wait_for(self, predicate: Callable[[list[ExecutionReport]], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self.reports)`` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self.reports):
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_kind(self, cl_ord_id: str, kind: ReportKind, timeout: float = 10.0) -> None:
        """Wait until one order (as :meth:`of`) has a report of ``kind``."""
        await self.wait_for(lambda _: any(r.kind is kind for r in self.of(cl_ord_id)), timeout)


def _cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


def _needs(broker: Broker, *, types: tuple[OrderType, ...] = (), tifs: tuple[TimeInForce, ...] = ()) -> None:
    missing = [t.value for t in types if t not in broker.capabilities.order_types]
    missing += [t.value for t in tifs if t not in broker.capabilities.time_in_force]
    if missing:
        pytest.skip(f"{broker.name} does not offer {', '.join(missing)}")


class _ContractOrders:
    """How the contract's cases build their orders (for the account ``contract_account`` names) and cancels."""

    account = "contract"
    #: The type of an order whose case names none.
    default_type = OrderType.MARKET

    @pytest.fixture(autouse=True)
    def _contract_account(self, contract_account: str) -> None:
        self.account = contract_account

    def _order(
        self,
        inst: Instrument,
        *,
        qty: Decimal,
        type: OrderType | None = None,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
        side: OrderSide = OrderSide.BUY,
        tif: TimeInForce = TimeInForce.GTC,
        cid: str | None = None,
    ) -> SubmitOrder:
        """A BUY of ``default_type``; a limit price the case names none of rests 10% under the market."""
        type = type or self.default_type
        if type.needs_price and price is None:
            price = inst.round_price(inst.initial_price * Decimal("0.9"))
        return SubmitOrder(
            cl_ord_id=cid or _cid(),
            account=self.account,
            symbol=inst.symbol,
            side=side,
            type=type,
            time_in_force=tif,
            qty=qty,
            price=price,
            stop_price=stop_price,
        )

    @staticmethod
    def _cancel(order: SubmitOrder, cid: str | None = None) -> CancelOrder:
        return CancelOrder(cl_ord_id=cid or order.cl_ord_id, symbol=order.symbol, side=order.side, qty=order.qty)

    @staticmethod
    async def _status(broker: Broker, cl_ord_id: str, status: OrderStatus, **fields: Any) -> OrderStatusReport:
        """The broker's status of an order, asserted to be ``status`` with ``fields``."""
        found = await broker.get_order_status(cl_ord_id)
        assert found is not None and found.status is status, found
        for name, value in fields.items():
            assert getattr(found, name) == value, (name, found)
        return found


class BrokerContract(_ContractOrders):
    """Behaviour every adapter shares (the order-type cases as far as its capabilities go)."""

    async def test_market_order_is_acknowledged_and_filled(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        order = self._order(inst, qty=inst.min_qty)
        ack = await broker.submit_order(order)
        assert ack.accepted, ack.reason
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        fills = reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        assert sum(f.last_qty for f in fills) == order.qty
        assert all(f.last_price and f.last_price > 0 for f in fills)
        await self._status(broker, order.cl_ord_id, OrderStatus.FILLED, cum_qty=order.qty)

    async def test_resting_limit_order_can_be_canceled(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        far = inst.round_price(inst.initial_price * Decimal("0.9"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.LIMIT, price=far)
        assert (await broker.submit_order(order)).accepted
        await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED, cum_qty=0)
        cancel = await broker.cancel_order(self._cancel(order))
        assert cancel.accepted, cancel.reason
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.CANCELED)
        await self._status(broker, order.cl_ord_id, OrderStatus.CANCELED)

    async def test_large_order_fills_in_pieces(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        qty = inst.display_qty * 2 + inst.min_qty
        marketable = broker.capabilities.marketable_limits
        # A limit through the market fills at once; where the broker refuses that (MT5), it rests and the market
        # comes to it.
        price = inst.round_price(inst.initial_price * (Decimal("1.01") if marketable else Decimal("0.99")))
        order = self._order(inst, qty=qty, type=OrderType.LIMIT, price=price)
        assert (await broker.submit_order(order)).accepted
        if not marketable:
            await market.set_mid(inst.symbol, price - inst.tick_size * 5)
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        first = reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        assert first[0].last_qty == inst.display_qty and first[0].leaves_qty == qty - inst.display_qty
        for _ in range(2):
            await market.step()
        await reports.wait_for(
            lambda _: sum(r.last_qty for r in reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL) == qty
        )
        fills = reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        assert len(fills) == 3 and fills[-1].cum_qty == qty and fills[-1].leaves_qty == 0
        assert len({f.exec_id for f in fills}) == 3
        assert all(f.last_price is not None and f.last_price <= price for f in fills)  # never worse than the limit
        await market.set_mid(inst.symbol, inst.initial_price)

    async def test_invalid_quantity_is_rejected(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        inst = contract_instrument
        order = self._order(inst, qty=inst.max_qty + inst.lot_step)
        ack = await broker.submit_order(order)
        assert not ack.accepted and ack.reason
        status = await broker.get_order_status(order.cl_ord_id)
        assert status is None or status.status is OrderStatus.REJECTED

    async def test_unknown_order_has_no_status_and_cannot_be_canceled(
        self, broker: Broker, contract_instrument: Instrument
    ) -> None:
        cid = _cid()
        assert await broker.get_order_status(cid) is None
        ack = await broker.cancel_order(
            CancelOrder(
                cl_ord_id=cid,
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
        replace = ReplaceOrder(
            orig_cl_ord_id=order.cl_ord_id,
            cl_ord_id=f"{order.cl_ord_id}.1",
            **order.terms(qty=new_qty, price=new_price),
        )
        if not broker.capabilities.replace_changes_qty:
            # The broker changes prices only (MT5): a new quantity is refused with the reason, prices still change.
            refused = await broker.replace_order(replace)
            assert not refused.accepted and refused.reason
            new_qty = order.qty
            replace = replace.model_copy(update={"qty": new_qty})
        ack = await broker.replace_order(replace)
        assert ack.accepted, ack.reason
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.REPLACED)
        status = await broker.get_order_status(f"{order.cl_ord_id}.1")
        assert status is not None and status.qty == new_qty and status.price == new_price
        assert status.cl_ord_id == replace.cl_ord_id

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
        await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED)  # the original is untouched
        opens = [o for o in await broker.open_orders() if o.cl_ord_id == order.cl_ord_id]
        assert len(opens) == 1

    @staticmethod
    def _needs_marketable_limits(broker: Broker) -> None:
        if not broker.capabilities.marketable_limits:
            pytest.skip(f"{broker.name} refuses limit orders priced through the market (IOC/FOK limits need them)")

    # -- order types and times in force ----------------------------------------------------------------------

    async def test_stop_order_rests_until_triggered_then_fills(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        _needs(broker, types=(OrderType.STOP,))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        stop = inst.round_price(inst.initial_price * Decimal("1.02"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.STOP, stop_price=stop)
        assert (await broker.submit_order(order)).accepted
        await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED, cum_qty=0)
        await market.set_mid(inst.symbol, stop + inst.tick_size * 5)
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        await self._status(broker, order.cl_ord_id, OrderStatus.FILLED)
        await market.set_mid(inst.symbol, inst.initial_price)

    async def test_market_if_touched_rests_until_touched_in_its_favour_then_fills(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        _needs(broker, types=(OrderType.MARKET_IF_TOUCHED,))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        touch = inst.round_price(inst.initial_price * Decimal("0.98"))
        order = self._order(inst, qty=inst.min_qty, type=OrderType.MARKET_IF_TOUCHED, stop_price=touch)
        assert (await broker.submit_order(order)).accepted
        # The price rises (a buy stop would trigger): a touched buy keeps waiting.
        await market.set_mid(inst.symbol, inst.round_price(inst.initial_price * Decimal("1.03")))
        status = await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED, cum_qty=0)
        assert status.stop_price == touch and status.price is None
        await market.set_mid(inst.symbol, touch - inst.tick_size * 5)
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        await self._status(broker, order.cl_ord_id, OrderStatus.FILLED)
        await market.set_mid(inst.symbol, inst.initial_price)

    async def test_limit_if_touched_triggers_in_its_favour_then_works_at_its_limit(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        _needs(broker, types=(OrderType.LIMIT_IF_TOUCHED,))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        touch = inst.round_price(inst.initial_price * Decimal("1.02"))
        limit = inst.round_price(inst.initial_price * Decimal("1.01"))
        order = self._order(
            inst,
            qty=inst.min_qty,
            type=OrderType.LIMIT_IF_TOUCHED,
            stop_price=touch,
            price=limit,
            side=OrderSide.SELL,
        )
        assert (await broker.submit_order(order)).accepted
        await market.set_mid(inst.symbol, inst.round_price(inst.initial_price * Decimal("0.97")))  # falling: waits
        status = await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED, cum_qty=0)
        assert status.stop_price == touch and status.price == limit
        await market.set_mid(inst.symbol, touch + inst.tick_size * 5)  # a sell touched when the bid rises to it
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        await self._status(broker, order.cl_ord_id, OrderStatus.FILLED)
        await market.set_mid(inst.symbol, inst.initial_price)

    @pytest.mark.parametrize("tif", [TimeInForce.OPG, TimeInForce.CLS])
    async def test_an_auction_order_waits_for_its_auction_even_when_marketable(
        self,
        broker: Broker,
        reports: ReportCollector,
        market: MarketControl,
        contract_instrument: Instrument,
        tif: TimeInForce,
    ) -> None:
        # The auction (the session's open or close) is hours away in any test run, unless the run straddles it.
        _needs(broker, tifs=(tif,))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        order = self._order(inst, qty=inst.min_qty, tif=tif)
        assert (await broker.submit_order(order)).accepted
        await market.set_mid(inst.symbol, inst.round_price(inst.initial_price * Decimal("1.01")))
        await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED, cum_qty=0)
        assert not reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        cancel = self._cancel(order)
        assert (await broker.cancel_order(cancel)).accepted
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.CANCELED)
        await market.set_mid(inst.symbol, inst.initial_price)

    async def test_ioc_remainder_is_canceled(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        _needs(broker, tifs=(TimeInForce.IOC,))
        self._needs_marketable_limits(broker)
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        price = inst.round_price(inst.initial_price * Decimal("1.01"))
        order = self._order(inst, qty=inst.display_qty * 2, type=OrderType.LIMIT, price=price, tif=TimeInForce.IOC)
        assert (await broker.submit_order(order)).accepted
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.CANCELED)
        fills = reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        assert sum(f.last_qty for f in fills) == inst.display_qty
        await self._status(broker, order.cl_ord_id, OrderStatus.CANCELED, cum_qty=inst.display_qty)

    async def test_fok_that_cannot_fill_in_full_is_canceled_without_fills(
        self, broker: Broker, reports: ReportCollector, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        _needs(broker, tifs=(TimeInForce.FOK,))
        self._needs_marketable_limits(broker)
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        price = inst.round_price(inst.initial_price * Decimal("1.01"))
        order = self._order(inst, qty=inst.display_qty * 2, type=OrderType.LIMIT, price=price, tif=TimeInForce.FOK)
        assert (await broker.submit_order(order)).accepted
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.CANCELED)
        assert not reports.of_kind(order.cl_ord_id, ReportKind.FILL)
        await self._status(broker, order.cl_ord_id, OrderStatus.CANCELED, cum_qty=0)


class FaultControl(Protocol):
    """Makes the counterpart behind a broker fail the way networks and brokers do.

    ``op`` is one of ``submit``, ``cancel``, ``replace``, ``status`` (the broker request it applies to). A fault the
    counterpart cannot inject is not ``offered``, and the cases that need it are skipped.
    """

    def offers(self, kind: str, op: str = "") -> bool:
        """Whether the counterpart can inject ``kind`` (``lose_answer``, ``stall``, ``fail_before``, ``throttle``,
        ``restart``) on ``op``."""
        ...

    def lose_answer(self, op: str) -> None:
        """The next ``op`` is carried out, then its answer is lost (the connection drops mid-answer)."""
        ...

    def stall(self, op: str) -> None:
        """The next ``op`` is carried out, and answered only after the adapter stopped waiting."""
        ...

    def fail_before(self, op: str, times: int = 1) -> None:
        """The next ``times`` ``op`` requests fail (a 5xx, a request lost) before the counterpart does anything."""
        ...

    def throttle(self, requests: int, per_seconds: float) -> None:
        """Answer 429 beyond ``requests`` in any ``per_seconds`` (0 requests: no limit)."""
        ...

    @property
    def throttled(self) -> int:
        """429 answers given so far."""
        ...

    async def restart(self, sink: ReportSink) -> Broker:
        """Close the adapter and start a new one over the same records, reporting to ``sink``."""
        ...


class StorageControl(Protocol):
    """Makes the adapter's own records (Postgres) fail: while ``down``, no connection can be had."""

    down: bool


class ResilienceContract(_ContractOrders):
    """What an adapter does when the network, the broker or its own records fail: unknown is not failed.

    These are the "unknown is not failed" cases of NautilusTrader's execution conformance matrix (TC-E74…E78): a
    timeout, disconnect, 429 or 5xx on submit, cancel or replace never turns into a rejection; the next status lookup
    decides. Each case runs where the adapter's capabilities and the faults its counterpart offers allow it.
    """

    default_type = OrderType.LIMIT  # resting, 10% under the market

    @staticmethod
    def _replace(broker: Broker, order: SubmitOrder, qty: Decimal, price: Decimal) -> ReplaceOrder:
        return ReplaceOrder(
            orig_cl_ord_id=order.cl_ord_id,
            cl_ord_id=f"{order.cl_ord_id}.1",
            # A broker that changes prices only (MT5) is asked for new prices only.
            **order.terms(qty=qty if broker.capabilities.replace_changes_qty else order.qty, price=price),
        )

    @staticmethod
    def _needs(faults: FaultControl, *wanted: tuple[str, str]) -> None:
        missing = [f"{kind} on {op}" if op else kind for kind, op in wanted if not faults.offers(kind, op)]
        if missing:
            pytest.skip(f"the counterpart cannot inject {', '.join(missing)}")

    @staticmethod
    async def _lookup(broker: Broker, cl_ord_id: str, timeout: float = 30.0) -> OrderStatusReport | None:
        """The status lookup the order workflow makes: asked again while the broker is unavailable (reconnecting)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    return await broker.get_order_status(cl_ord_id)
                except BrokerUnavailable:
                    await asyncio.sleep(0.2)

    # -- submit ----------------------------------------------------------------------------------------------

    async def test_lost_submit_answer_is_unavailable_and_the_status_lookup_decides(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("lose_answer", "submit"))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        order = self._order(inst, qty=inst.min_qty)
        faults.lose_answer("submit")
        with pytest.raises(BrokerUnavailable):
            await broker.submit_order(order)
        status = await self._lookup(broker, order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED  # it arrived: never send it again
        again = await broker.submit_order(order)  # even a blind resend cannot make a twin
        assert not again.accepted
        assert [o.cl_ord_id for o in await broker.open_orders()].count(order.cl_ord_id) == 1

    async def test_submit_refused_before_anything_is_unavailable_and_unknown_to_the_broker(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("fail_before", "submit"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        faults.fail_before("submit")
        with pytest.raises(BrokerUnavailable):
            await broker.submit_order(order)
        assert await self._lookup(broker, order.cl_ord_id) is None  # the lookup says: send it
        ack = await broker.submit_order(order)
        assert ack.accepted, ack.reason

    async def test_submit_timeout_is_unavailable_never_a_rejection(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("stall", "submit"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        faults.stall("submit")
        with pytest.raises(BrokerUnavailable):
            await broker.submit_order(order)
        status = await self._lookup(broker, order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED

    # -- cancel ----------------------------------------------------------------------------------------------

    async def test_lost_cancel_answer_is_unavailable_and_the_status_lookup_decides(
        self,
        broker: Broker,
        reports: ReportCollector,
        faults: FaultControl,
        market: MarketControl,
        contract_instrument: Instrument,
    ) -> None:
        self._needs(faults, ("lose_answer", "cancel"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        faults.lose_answer("cancel")
        with pytest.raises(BrokerUnavailable):
            await broker.cancel_order(self._cancel(order))
        status = await self._lookup(broker, order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.CANCELED
        await reports.wait_for_kind(order.cl_ord_id, ReportKind.CANCELED)

    async def test_cancel_refused_before_anything_is_unavailable_never_a_refusal(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("fail_before", "cancel"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        faults.fail_before("cancel")
        with pytest.raises(BrokerUnavailable):
            await broker.cancel_order(self._cancel(order))
        status = await self._lookup(broker, order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.ACCEPTED  # nothing happened: cancel again
        assert (await broker.cancel_order(self._cancel(order))).accepted

    async def test_cancel_timeout_is_unavailable_never_a_refusal(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("stall", "cancel"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        faults.stall("cancel")
        with pytest.raises(BrokerUnavailable):
            await broker.cancel_order(self._cancel(order))
        status = await self._lookup(broker, order.cl_ord_id)
        assert status is not None and status.status is OrderStatus.CANCELED
        assert (await broker.cancel_order(self._cancel(order))).accepted  # a retried cancel of a canceled order

    # -- replace ---------------------------------------------------------------------------------------------

    async def test_lost_replace_answer_is_unavailable_and_the_status_lookup_decides(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("lose_answer", "replace"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        assert order.price is not None
        replace = self._replace(broker, order, inst.min_qty * 3, order.price + inst.tick_size)
        faults.lose_answer("replace")
        with pytest.raises(BrokerUnavailable):
            await broker.replace_order(replace)
        status = await self._lookup(broker, replace.cl_ord_id)
        assert status is not None and status.cl_ord_id == replace.cl_ord_id
        assert status.qty == replace.qty and status.price == replace.price
        again = await broker.replace_order(replace)  # the retry finds it done
        assert again.accepted and again.cl_ord_id == replace.cl_ord_id

    async def test_replace_timeout_is_unavailable_never_a_refusal(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("stall", "replace"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        assert order.price is not None
        replace = self._replace(broker, order, inst.min_qty * 2, order.price - inst.tick_size)
        faults.stall("replace")
        with pytest.raises(BrokerUnavailable):
            await broker.replace_order(replace)
        status = await self._lookup(broker, replace.cl_ord_id)
        assert status is not None and status.cl_ord_id == replace.cl_ord_id
        assert status.qty == replace.qty and status.price == replace.price

    # -- throttling and reads --------------------------------------------------------------------------------

    async def test_throttled_requests_are_retried_with_backoff_never_rejected(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        if not broker.capabilities.rate_limited:
            pytest.skip(f"{broker.name} does not throttle requests")
        self._needs(faults, ("throttle", ""))
        inst = contract_instrument
        faults.throttle(3, 1.0)
        before = faults.throttled
        orders = [self._order(inst, qty=inst.min_qty) for _ in range(6)]
        acks = await asyncio.gather(*(broker.submit_order(o) for o in orders))
        assert all(a.accepted for a in acks), [a.reason for a in acks]
        assert faults.throttled > before  # the limit was hit, and waited out
        statuses = await asyncio.gather(*(broker.get_order_status(o.cl_ord_id) for o in orders))
        assert all(s is not None and s.status is OrderStatus.ACCEPTED for s in statuses)
        faults.throttle(0, 1.0)

    async def test_status_lookup_rides_out_5xx(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("fail_before", "status"))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        faults.fail_before("status", times=2)
        await self._status(broker, order.cl_ord_id, OrderStatus.ACCEPTED)

    # -- the adapter's own records ---------------------------------------------------------------------------

    async def test_storage_failure_is_unavailable_never_a_refusal(
        self,
        request: pytest.FixtureRequest,
        broker: Broker,
        market: MarketControl,
        contract_instrument: Instrument,
    ) -> None:
        try:
            storage: StorageControl = request.getfixturevalue("storage")
        except pytest.FixtureLookupError:
            pytest.skip("the adapter's conftest provides no `storage` control")
        inst = contract_instrument
        working = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(working)).accepted
        new = self._order(inst, qty=inst.min_qty)
        assert working.price is not None
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "submit_order": lambda: broker.submit_order(new),
            "cancel_order": lambda: broker.cancel_order(self._cancel(working)),
            "replace_order": lambda: broker.replace_order(
                self._replace(broker, working, inst.min_qty * 2, working.price - inst.tick_size)  # type: ignore[operator]
            ),
            "get_order_status": lambda: broker.get_order_status(working.cl_ord_id),
            "open_orders": broker.open_orders,
        }
        storage.down = True
        try:
            for name, call in calls.items():
                with pytest.raises(BrokerUnavailable):  # the outcome is unknown, never a refusal
                    await call()
                    pytest.fail(f"{name} answered while the adapter's records were down")
        finally:
            storage.down = False
        # Back up: the lookups decide. A request whose outcome was unknown may have gone through (the cancel, the
        # replace); none was refused for it; the new order is known at most once.
        status = await self._lookup(broker, working.cl_ord_id)
        assert status is not None and status.status is not OrderStatus.REJECTED
        found = await self._lookup(broker, new.cl_ord_id)
        if found is None:
            assert (await broker.submit_order(new)).accepted
        else:
            assert not (await broker.submit_order(new)).accepted  # no twin
        for order in (working, new):
            assert (await broker.cancel_order(self._cancel(order))).accepted  # canceled now, or before

    # -- restarts --------------------------------------------------------------------------------------------

    async def test_reports_are_delivered_again_after_the_adapter_restarts(
        self, broker: Broker, faults: FaultControl, market: MarketControl, contract_instrument: Instrument
    ) -> None:
        self._needs(faults, ("restart", ""))
        inst = contract_instrument
        await market.set_mid(inst.symbol, inst.initial_price)
        order = self._order(inst, qty=inst.min_qty, type=OrderType.MARKET)
        refused = ReportCollector()

        async def failing(report: ExecutionReport) -> None:
            # Only this order's reports fail. Reports of one shard go out one after the other, so a report of an
            # earlier test's order left undelivered (redelivered by the restart) that failed too would hold this
            # order's reports back for good whenever both orders share a shard (1 in 16): the wait below timed out.
            if report.cl_ord_id.split(".")[0] != order.cl_ord_id:
                return
            await refused(report)
            raise RuntimeError("the consumer is down")

        broker = await faults.restart(failing)
        assert (await broker.submit_order(order)).accepted
        # Every delivery of the order fails (its reports queue behind the first): the adapter has them, nobody else.
        await refused.wait_for(lambda _: bool(refused.of(order.cl_ord_id)))
        after = ReportCollector()
        broker = await faults.restart(after)
        await after.wait_for_kind(order.cl_ord_id, ReportKind.FILL)
        fills = after.of_kind(order.cl_ord_id, ReportKind.FILL)
        assert sum(f.last_qty for f in fills) == order.qty

    async def test_open_orders_survive_the_adapter_restarting(
        self,
        broker: Broker,
        reports: ReportCollector,
        faults: FaultControl,
        market: MarketControl,
        contract_instrument: Instrument,
    ) -> None:
        self._needs(faults, ("restart", ""))
        inst = contract_instrument
        order = self._order(inst, qty=inst.min_qty)
        assert (await broker.submit_order(order)).accepted
        broker = await faults.restart(reports)
        opens = [o for o in await broker.open_orders() if o.cl_ord_id == order.cl_ord_id]
        assert len(opens) == 1 and opens[0].status is OrderStatus.ACCEPTED
        assert (await broker.cancel_order(self._cancel(order))).accepted


class UnwrittenContract:
    """The "not written yet" checks: an adapter copied from ``brokers/_template/`` before its methods are written.

    It builds from its spec, says what it is, and every call fails loudly with ``NotImplementedError`` naming the
    call, behind the shared storage boundary; nothing half-works. The test module provides ``spec`` (the
    ``BrokerSpec``) and ``unwritten`` (the adapter its factory built, not started).
    """

    def test_the_spec_says_what_the_broker_is(self, spec: BrokerSpec) -> None:
        assert spec.name and spec.name == spec.name.lower() and spec.name.isidentifier()
        assert spec.description
        assert spec.capabilities.order_types and spec.capabilities.time_in_force
        assert spec.quotes is None or spec.quotes.source == spec.name  # risk prices its orders with its own quotes

    def test_the_factory_builds_an_adapter_of_the_protocol(self, spec: BrokerSpec, unwritten: Broker) -> None:
        assert isinstance(unwritten, Broker)
        assert unwritten.name == spec.name and unwritten.capabilities == spec.capabilities

    def test_every_call_is_behind_the_shared_storage_boundary(self, unwritten: Broker) -> None:
        for call in BROKER_CALLS:
            assert getattr(getattr(type(unwritten), call), "__storage_boundary__", False), call

    @pytest.mark.parametrize("call", [*BROKER_CALLS, "close"])
    async def test_every_call_raises_not_implemented_naming_itself(
        self, unwritten: Broker, reports: ReportCollector, call: str
    ) -> None:
        order = SubmitOrder(
            cl_ord_id=_cid(),
            account="contract",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            qty=Decimal(1),
        )
        arguments: dict[str, tuple[object, ...]] = {
            "start": (reports,),
            "submit_order": (order,),
            "cancel_order": (CancelOrder(cl_ord_id=order.cl_ord_id, symbol="AAPL", side=order.side, qty=order.qty),),
            "replace_order": (
                ReplaceOrder(
                    orig_cl_ord_id=order.cl_ord_id,
                    cl_ord_id=f"{order.cl_ord_id}.1",
                    symbol="AAPL",
                    side=order.side,
                    type=OrderType.LIMIT,
                    time_in_force=order.time_in_force,
                    qty=order.qty,
                    price=Decimal(100),
                ),
            ),
            "get_order_status": (order.cl_ord_id,),
            "fills_since": (datetime(2026, 1, 1, tzinfo=UTC),),
        }
        with pytest.raises(NotImplementedError, match=f"`{call}`"):
            await getattr(unwritten, call)(*arguments.get(call, ()))
