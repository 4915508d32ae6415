"""Write an order's progress to Postgres: the read model, the timeline, fills, positions and cash.

The workflow calls ``persist_order`` (a local activity) with the order's current snapshot and whatever
events, fills and breaks it has not persisted yet. Every write is keyed on a natural id, so a retried
call changes nothing twice: fills on ``(broker, exec_id)`` (positions and cash move only for fills this call
inserted), breaks on their text, the order row only forward (``version``) and only for the terms it holds
(``request_hash``: a run for other terms under the same order id is refused with a break, never written over it).

The timeline converges on what Temporal recorded. Events are numbered by the workflow; a workflow task that
fails after its booking committed is retried, and the retry may number differently (a signal that arrived
meanwhile is handled first). So a booking overwrites the rows of its ``seq`` range and deletes rows beyond
the order's event count, and what depends on an event being new (the circuit breaker's streaks, the overfill
counter) asks whether the order already had that event, not whether its row was inserted.

Text that Postgres cannot store (NUL, lone surrogates) is replaced at this boundary (``pg_text``), so no
input can make a booking fail for good. A booking that fails anyway is counted
(``exodus_booking_failures_total``) and logged with the order id; the workflow retries it and records a
``BOOKING_DELAYED`` break once it goes in.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from core.db import pipelined_transaction
from core.domain import (
    Break,
    BreakKind,
    Fill,
    OrderEvent,
    OrderEventKind,
    OrderState,
    OrderStatus,
    OrderTerms,
    RiskDecision,
    TimelineKind,
    workflow_id_for,
)
from core.instruments import InstrumentCatalog
from core.metrics import (
    BOOKING_FAILURES,
    CIRCUIT_BREAKER_TRIPS,
    FILLS,
    ORDER_LATENCY,
    ORDERS_COMPLETED,
    OVERFILLS,
    RECONCILIATION_BREAKS,
)
from store import Conn, Pool, ledger, orders, risk, timeline
from store.audit import append_audit
from store.breaks import add_order_break
from store.orders import OrderOwner, OrderRow, terms_columns
from store.policy import PolicyStore
from store.text import NUL_REPLACEMENT, pg_text, pg_value
from store.timeline import KnownEvent

__all__ = [
    "FOREIGN_BOOKING",
    "NUL_REPLACEMENT",
    "OrderSnapshot",
    "OrderStoreActivities",
    "PersistInput",
    "pg_text",
    "pg_value",
]

log = logging.getLogger(__name__)


class OrderSnapshot(OrderTerms):
    """The order row's columns: the order's current terms and its state."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    order_id: str
    idempotency_key: str
    request_hash: str
    client_id: str
    client_order_id: str
    broker: str
    broker_order_id: str | None
    status: OrderStatus
    filled_qty: Decimal
    avg_price: Decimal | None
    reason: str | None
    flags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime
    #: Added after the first release (snapshots in older histories load without it).
    reduce_only: bool = False

    @classmethod
    def of(cls, state: OrderState) -> OrderSnapshot:
        """Snapshot an order state."""
        r = state.request
        return cls(
            order_id=r.order_id,
            idempotency_key=r.idempotency_key,
            request_hash=r.request_hash,
            client_id=r.client_id,
            client_order_id=r.client_order_id,
            **state.terms(),
            broker=r.broker,
            broker_order_id=state.broker_order_id,
            status=state.status,
            filled_qty=state.filled_qty,
            avg_price=state.avg_price,
            reason=state.reason,
            flags=list(state.flags),
            version=len(state.events),
            created_at=state.created_at,
            updated_at=state.updated_at,
            reduce_only=r.reduce_only,
        )

    def row(self, decision: RiskDecision | None) -> OrderRow:
        """The order row this snapshot books (``store.orders.OrderRow``), with the decision acted on, if given."""
        row: OrderRow = {
            **terms_columns(self),
            "order_id": self.order_id,
            "workflow_id": workflow_id_for(self.order_id),
            "idempotency_key": self.idempotency_key,
            "request_hash": self.request_hash,
            "client_id": self.client_id,
            "client_order_id": self.client_order_id,
            "broker": self.broker,
            "broker_order_id": self.broker_order_id,
            "status": self.status.value,
            "filled_qty": self.filled_qty,
            "avg_price": self.avg_price,
            "reason": self.reason,
            "flags": list(self.flags),
            "risk_decision": None if decision is None else decision.model_dump(mode="json"),
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "reduce_only": self.reduce_only,
        }
        return pg_value(row)


class PersistInput(BaseModel):
    """Input of ``persist_order``."""

    model_config = ConfigDict(frozen=True)

    snapshot: OrderSnapshot
    events: list[OrderEvent] = []
    fills: list[Fill] = []
    breaks: list[Break] = []
    #: Set on the last call: the order is final and reconciled.
    final: bool = False
    received_at: datetime | None = None
    #: The risk decision the workflow acted on (the last call carries it): the row keeps it as the answer to
    #: the order's idempotency key, also when the workflow denied the order itself (RISK_CHECK_FAILED) after
    #: an attempt committed a decision it never heard of.
    decision: RiskDecision | None = None


#: A booking refused because the order's row belongs to other terms (kind of the break it records).
FOREIGN_BOOKING = BreakKind.BOOKING_FOR_OTHER_TERMS


#: Events whose first booking has effects beyond the timeline (streaks, counters).
_COUNTED_KINDS = frozenset({OrderEventKind.ACCEPT, OrderEventKind.REJECT, TimelineKind.OVERFILL_REFUSED})


def _identity(kind: str, exec_id: str | None) -> tuple[str, str | None]:
    # An order is accepted, or rejected, once (its submission's outcome); an overfill is refused per report.
    overfill = kind == TimelineKind.OVERFILL_REFUSED
    return (str(kind), pg_text(exec_id) if overfill and exec_id is not None else None)


def _new_events(watched: list[OrderEvent], known_rows: list[KnownEvent]) -> list[OrderEvent]:
    """Of the ``watched`` events written, those the order did not have before (``known_rows``).

    By what they are (``_identity``), not by row: a booking retried under a different numbering counts
    nothing twice.
    """
    if not watched:
        return []
    known = {_identity(row["kind"], row["exec_id"]) for row in known_rows}
    new: list[OrderEvent] = []
    for event in watched:
        key = _identity(event.kind, event.data.get("exec_id"))
        if key not in known:
            known.add(key)
            new.append(event)
    return new


class _OtherTerms(Exception):
    """The order's row belongs to another request: the booking is rolled back and refused."""


class OrderStoreActivities:
    """Writes order progress to Postgres."""

    def __init__(self, *, pool: Pool, instruments: InstrumentCatalog, policy: PolicyStore) -> None:
        """Use ``pool``; the catalogue gives quote currencies for cash; the policy the circuit breaker's N."""
        self._pool = pool
        self._instruments = instruments
        self._policy = policy

    @activity.defn(name="persist_order")
    async def persist_order(self, inp: PersistInput) -> int:
        """Persist a snapshot with its new events, fills and breaks; return how many fills were newly booked."""
        snap = inp.snapshot
        try:
            booked, new_events = await self._persist(inp)
        except Exception as e:
            # An alert, not a silence: the workflow retries (never blocking its cancels or broker calls).
            BOOKING_FAILURES.labels(broker=snap.broker).inc()
            log.error(
                "booking of order %s (%s, %d event(s), %d fill(s)) failed: %s: %s",
                snap.order_id,
                snap.status.value,
                len(inp.events),
                len(inp.fills),
                type(e).__name__,
                e,
            )
            raise
        if booked:
            FILLS.labels(broker=snap.broker).inc(booked)
        if any(e.kind is TimelineKind.OVERFILL_REFUSED for e in new_events):
            OVERFILLS.labels(broker=snap.broker).inc()
        if inp.final:
            ORDERS_COMPLETED.labels(broker=snap.broker, status=snap.status.value).inc()
            if inp.received_at is not None:
                elapsed = (snap.updated_at - inp.received_at).total_seconds()
                ORDER_LATENCY.labels(stage="end_to_end").observe(max(elapsed, 0.0))
                if snap.status is OrderStatus.FILLED:
                    ORDER_LATENCY.labels(stage="fill").observe(max(elapsed, 0.0))
        return booked

    async def _persist(self, inp: PersistInput) -> tuple[int, list[OrderEvent]]:
        snap = inp.snapshot
        # One transaction in pipeline mode (core.db.pipelined_transaction): BEGIN, the statements and COMMIT go
        # out together, and the booking waits for Postgres twice: once for every answer it needs (whose row it
        # is, the events the order had, which fills are new, their positions), once for the commit.
        async with self._pool.connection() as conn:
            try:
                async with pipelined_transaction(conn):
                    return await self._book(conn, inp)
            except _OtherTerms:
                # Rolled back: nothing of this booking was written. Record the refusal instead.
                async with pipelined_transaction(conn):
                    owner = await orders.lock_order(conn, snap.order_id)
                    assert owner is not None  # a row is never deleted
                    await self._foreign_booking(conn, inp, owner)
                return 0, []

    async def _book(self, conn: Conn, inp: PersistInput) -> tuple[int, list[OrderEvent]]:
        snap = inp.snapshot
        # First: lock the order's row (bookings of one order never interleave) and see whose it is. A row
        # holds one request's terms for good: a run for other terms under the same order id (a reused
        # idempotency key, refused IDEMPOTENCY_CONFLICT) never writes over it, its timeline, its reservation
        # or its ledger; the attempt is recorded as a break instead. The writes are sent before the answer
        # is read (one round trip); if the row is another request's, they are rolled back (``_OtherTerms``).
        owner = await orders.send_lock_order(conn, snap.order_id)
        await orders.write_order(conn, snap.row(inp.decision), booking=True)
        watched = [e for e in inp.events if e.kind in _COUNTED_KINDS]
        known = await timeline.send_events(
            conn, order_id=snap.order_id, version=snap.version, events=inp.events, watched={e.kind for e in watched}
        )
        fills = await ledger.send_fills(conn, [(fill, self._currency(fill)) for fill in inp.fills])
        row = await owner.result()
        if row is not None and row["request_hash"] != snap.request_hash:
            raise _OtherTerms
        new_events = _new_events(watched, await known.result())
        booked = sum(await fills.settle())
        await self._update_reservation(conn, snap)
        await self._circuit_breaker(conn, snap, new_events)
        for brk in inp.breaks:
            if await add_order_break(conn, brk, order_id=snap.order_id, broker=snap.broker):
                RECONCILIATION_BREAKS.labels(broker=snap.broker, kind=brk.kind.value).inc()
        return booked, new_events

    def _currency(self, fill: Fill) -> str:
        inst = self._instruments.get(fill.symbol)
        return inst.quote_currency if inst else "USD"

    @staticmethod
    async def _foreign_booking(conn: Conn, inp: PersistInput, owner: OrderOwner) -> None:
        """Refuse a booking whose order row belongs to other terms: log it and record a break on the order."""
        snap = inp.snapshot
        brk = Break(
            kind=FOREIGN_BOOKING,
            detail=f"a booking of order {snap.order_id} for other terms (request {snap.request_hash}, "
            f"{snap.status.value}: {snap.side} {snap.qty:f} {snap.symbol}) was refused; the row belongs to "
            f"request {owner['request_hash']} ({owner['status']}) and was left as it was",
        )
        log.error("%s (%d event(s), %d fill(s) not booked)", pg_text(brk.text), len(inp.events), len(inp.fills))
        if await add_order_break(conn, brk, order_id=snap.order_id, broker=snap.broker):
            RECONCILIATION_BREAKS.labels(broker=snap.broker, kind=brk.kind.value).inc()

    async def _update_reservation(self, conn: Conn, snap: OrderSnapshot) -> None:
        # The reservation follows the order: what is still open, at its current price; nothing once closed.
        if snap.status.is_terminal:
            await risk.release_reservation(conn, snap.order_id)
        elif snap.status is not OrderStatus.PENDING_UPDATE:
            # While an amend is pending the reservation holds the larger of old and new terms, as the amend's
            # risk check left it, stamped with the order version it checked (hold_version). A booking of that
            # version or an older one leaves it alone: the workflow's flusher may have had it in flight while
            # the check ran, and it may commit after the check. Only a newer state (the amend's own events, the
            # broker's answer) sets the terms. Nor does a stale booking (the order row is newer) change them.
            await risk.follow_reservation(
                conn,
                order_id=snap.order_id,
                open_qty=max(snap.qty - snap.filled_qty, Decimal(0)),
                price=snap.price or snap.stop_price,
                version=snap.version,
            )

    async def _circuit_breaker(self, conn: Conn, snap: OrderSnapshot, events: list[OrderEvent]) -> None:
        # N broker rejections in a row halt the account and the broker; any acceptance resets the streaks.
        outcomes = [e for e in events if e.kind in (OrderEventKind.REJECT, OrderEventKind.ACCEPT)]
        if not outcomes:
            return
        limit: int | None = None
        for scope, key in (("ACCOUNT", snap.account), ("BROKER", snap.broker)):
            for event in outcomes:
                if event.kind is OrderEventKind.ACCEPT:
                    # Only a streak that is running is reset (store.risk.reset_reject_streak says why).
                    await risk.reset_reject_streak(conn, scope=scope, key=key)
                    continue
                if limit is None:
                    limit = (await self._policy.load(conn)).policy.circuit_breaker_rejections
                streak = await risk.count_rejection(conn, scope=scope, key=key)
                if streak != limit:
                    continue
                reason = pg_text(
                    f"circuit breaker: {streak} consecutive broker rejections (last: {event.detail or 'no reason'})"
                )
                await risk.set_trading_state(
                    conn, scope=scope, key=key, state="HALTED", reason=reason, actor="circuit-breaker"
                )
                await append_audit(
                    conn,
                    actor="circuit-breaker",
                    action="TRADING_STATE_SET",
                    subject=f"{scope}:{key}",
                    detail={"to": "HALTED", "reason": reason, "order": snap.order_id},
                )
                CIRCUIT_BREAKER_TRIPS.labels(scope=scope).inc()
