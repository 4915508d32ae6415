"""An amend's hold survives a booking that was in flight when its risk check ran (integration of issues 10 and 11).

``check_amend`` reserves the larger of an order's old and new terms until the broker answers the replace. The
workflow's flusher books independently of the amend: a booking whose snapshot was taken before the amend can
commit after the amend's check. These tests make exactly that happen (the booking is held until the check has
committed) and check that no other order is approved into the room the pending amend holds, and that every
normal ending (replace confirmed, replace refused, amend refused by the re-check after a fill) leaves the
reservation equal to the order's real open terms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
from temporalio import activity

from activities.persistence import PersistInput
from activities.risk import AmendCheck
from brokers.base import Broker
from core.domain import (
    AmendRequest,
    BrokerAck,
    CancelRequest,
    OrderRequest,
    OrderStatus,
    ReplaceOrder,
    RiskDecision,
)
from store.policy import PolicyStore
from tests.harness import Stack, make_order, unique
from tests.waiting import until
from tests.workflows.faults import OrderWorker, order_worker
from tests.workflows.recording import record_history
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio

D = Decimal
#: 20 AAPL at the 190 mark: the account's gross exposure limit in these tests.
CAP = "3800"


class HeldReplaceBroker:
    """The paper broker, except that replaces wait until the test releases them (and may be refused)."""

    def __init__(self, inner: Broker) -> None:
        self._inner = inner
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.refuse = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        self.arrived.set()
        await self.release.wait()
        if self.refuse:
            return BrokerAck(accepted=False, cl_ord_id=request.cl_ord_id, reason="VENUE_BUSY: too late")
        return await self._inner.replace_order(request)


@dataclass
class Race:
    """Holds the first booking of an ACCEPTED snapshot until the amend's risk check has committed."""

    armed: bool = True
    held_version: int | None = None
    checked_versions: list[int | None] = field(default_factory=list)
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    checked: asyncio.Event = field(default_factory=asyncio.Event)
    #: Runs inside ``check_amend`` before the real check (the re-check test lands a fill there).
    before_check: Callable[[AmendCheck], Any] | None = None

    def activities(self, parts: OrderWorker) -> list[Callable[..., Any]]:
        @activity.defn(name="persist_order")
        async def persist_order(inp: PersistInput) -> int:
            if self.armed and inp.snapshot.status is OrderStatus.ACCEPTED:
                self.armed = False
                self.held_version = inp.snapshot.version
                self.holding.set()
                await self.checked.wait()  # commits only after the amend's check committed
            return await parts.store.persist_order(inp)

        @activity.defn(name="check_amend")
        async def check_amend(request: AmendCheck) -> RiskDecision:
            self.checked_versions.append(getattr(request, "version", None))
            try:
                if self.before_check is not None:
                    await self.before_check(request)
                return await parts.risk.check_amend(request)
            finally:
                self.checked.set()

        return [persist_order, check_amend]


async def _cap(stack: Stack, account: str, cap: str) -> None:
    policy = PolicyStore(stack.settings.risk)
    async with stack.pool.connection() as conn, conn.transaction():
        await policy.put(
            conn, scope="ACCOUNT", key=account, body={"max_gross_exposure": cap}, actor="test", reason="test"
        )


async def _held(stack: Stack, order_id: str) -> tuple[Decimal, Decimal, bool]:
    [row] = await stack.fetch(
        "SELECT qty_open, price, released_at FROM risk_reservations WHERE order_id = %s", order_id
    )
    return row["qty_open"], row["price"], row["released_at"] is not None


async def _eventually(check: Callable[[], Any], *, timeout: float = 20.0) -> Any:
    return await until(f"{check}", check, timeout=timeout)


def _limit_buy(account: str, qty: str) -> OrderRequest:
    return make_order(account=account, client_id=unique("desk"), qty=qty, type="LIMIT", price="180.00")


@contextlib.asynccontextmanager
async def _amend_in_race(
    stack: Stack, race: Race, qty: str = "18"
) -> AsyncIterator[tuple[OrderWorker, HeldReplaceBroker, OrderRequest, Any, asyncio.Task[Any]]]:
    """A resting buy of 10 whose acceptance booking is held while an amend to ``qty`` is risk checked.

    Yields once the amend's replace has reached the broker (held there) and the PENDING_UPDATE is booked.
    """
    await stack.venue.set_mid("AAPL", D("190.00"))
    account = unique("hold")
    await _cap(stack, account, CAP)
    broker = HeldReplaceBroker(stack.brokers["paper"])
    async with order_worker(stack, activities=race.activities, broker=broker) as w:  # type: ignore[arg-type]
        order = _limit_buy(account, "10")
        decision, handle = await w.submit(order)
        assert decision.approved
        await asyncio.wait_for(race.holding.wait(), 20)  # the acceptance's booking is in flight, not committed
        amend = asyncio.create_task(handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(qty))))
        await asyncio.wait_for(broker.arrived.wait(), 20)
        await stack.wait_for(handle, OrderStatus.PENDING_UPDATE)  # (the query shows what is booked)
        try:
            yield w, broker, order, handle, amend
        finally:
            broker.release.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(amend, 20)


async def test_a_late_booking_cannot_undo_an_amends_hold_and_no_order_gets_its_room(stack: Stack) -> None:
    race = Race()
    async with _amend_in_race(stack, race) as (w, broker, order, handle, amend):
        # The late booking (old terms, 10) did not bring the hold back down: 18 are held while the replace is out.
        assert (await _held(stack, order.order_id))[:2] == (D(18), D("180.00"))
        other = _limit_buy(order.account, "10")
        refused, other_handle = await w.submit(other)
        assert not refused.approved, "an order was approved into the room held by the pending amend"
        assert [r.code for r in refused.reasons] == ["MAX_GROSS_EXPOSURE"]
        await asyncio.wait_for(other_handle.result(), 20)
        # The check was made for the version of the booking that was in flight, and committed first.
        assert race.checked_versions == [race.held_version]

        broker.release.set()
        result = await asyncio.wait_for(amend, 20)
        assert result.accepted and result.qty == D(18)
        await _eventually(lambda: _booked_terms(stack, order.order_id, D(18)))
        # Confirmed: the reservation is the order's new terms.
        assert await _held(stack, order.order_id) == (D(18), D("180.00"), False)
        await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="done"))
        final = await asyncio.wait_for(handle.result(), 20)
    assert final.status is OrderStatus.CANCELED
    assert (await _held(stack, order.order_id))[2]


async def test_a_refused_replace_after_the_race_sets_the_old_terms_back(stack: Stack) -> None:
    race = Race()
    async with _amend_in_race(stack, race) as (w, broker, order, handle, amend):
        assert (await _held(stack, order.order_id))[0] == D(18)
        broker.refuse = True
        broker.release.set()
        result = await asyncio.wait_for(amend, 20)
        assert not result.accepted and result.status is OrderStatus.ACCEPTED and result.qty == D(10)
        await _eventually(lambda: _reservation_is(stack, order.order_id, D(10)))
        # The room the refused amend held is free again.
        approved, other_handle = await w.submit(_limit_buy(order.account, "10"))
        assert approved.approved, approved.reasons
        for h in (handle, other_handle):
            await h.signal(OrderWorkflow.cancel, CancelRequest(reason="done"))
            await asyncio.wait_for(h.result(), 20)


async def test_an_amend_refused_by_the_recheck_after_a_fill_leaves_the_real_terms(stack: Stack) -> None:
    # The order fills 500 of 1,000 while its amend (down to 400, at 185) is risk checked: the fill's booking
    # commits before the check, which still holds the larger terms (price 185). The re-check refuses the amend
    # (400 is not above the 500 filled); its refusal is booked, so the hold goes back to 500 open at 180.
    await stack.venue.set_mid("AAPL", D("190.00"))
    account = unique("recheck")
    booked_fill: list[bool] = []

    async def fill_first(request: AmendCheck) -> None:
        await stack.venue.set_mid("AAPL", D("179.50"))  # crosses the 180 limit: one fill of 500 shown
        await stack.venue.set_mid("AAPL", D("190.00"))
        await _eventually(lambda: _filled(stack, request.order.order_id, D(500)))
        booked_fill.append(True)

    race = Race(armed=False, before_check=fill_first)
    async with order_worker(stack, activities=race.activities) as w:
        order = _limit_buy(account, "1000")
        decision, handle = await w.submit(order)
        assert decision.approved
        await stack.wait_for(handle, OrderStatus.ACCEPTED)
        result = await asyncio.wait_for(
            handle.execute_update(OrderWorkflow.amend, AmendRequest(qty=D(400), price=D("185.00"))), 30
        )
        assert booked_fill == [True]
        assert not result.accepted and "must exceed the filled quantity" in (result.reason or "")
        await _eventually(lambda: _reservation_is(stack, order.order_id, D(500), D("180.00")))
        state = await stack.state(handle)
        assert [e.kind for e in state.events if e.kind == "AMEND_DENIED"] == ["AMEND_DENIED"]
        await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="done"))
        final = await asyncio.wait_for(handle.result(), 20)
        await record_history(handle, "paper-amend-refused-by-recheck-after-fill")
    assert final.status is OrderStatus.CANCELED and final.filled_qty == "500"
    assert (await _held(stack, order.order_id))[2]


async def _booked_terms(stack: Stack, order_id: str, qty: Decimal) -> bool:
    rows = await stack.fetch("SELECT qty, status FROM orders WHERE order_id = %s", order_id)
    return bool(rows) and rows[0]["qty"] == qty and rows[0]["status"] == "ACCEPTED"


async def _filled(stack: Stack, order_id: str, qty: Decimal) -> bool:
    rows = await stack.fetch("SELECT filled_qty FROM orders WHERE order_id = %s", order_id)
    return bool(rows) and rows[0]["filled_qty"] == qty


async def _reservation_is(stack: Stack, order_id: str, qty: Decimal, price: Decimal | None = None) -> bool:
    held_qty, held_price, released = await _held(stack, order_id)
    return not released and held_qty == qty and (price is None or held_price == price)
