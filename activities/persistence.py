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
from typing import Any, TypeVar

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from core.audit import append_audit
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
from core.ledger import PositionState, apply_fill, cash_delta
from core.metrics import (
    BOOKING_FAILURES,
    CIRCUIT_BREAKER_TRIPS,
    FILLS,
    ORDER_LATENCY,
    ORDERS_COMPLETED,
    OVERFILLS,
    RECONCILIATION_BREAKS,
)
from core.policy import PolicyStore

__all__ = ["FOREIGN_BOOKING", "OrderSnapshot", "OrderStoreActivities", "PersistInput", "pg_text", "pg_value"]

log = logging.getLogger(__name__)

#: What replaces a NUL (Postgres ``text`` and ``jsonb`` cannot hold U+0000).
NUL_REPLACEMENT = "\u2400"  # ␀

_T = TypeVar("_T")


def pg_text(text: str) -> str:
    """``text`` as Postgres can store it: NUL shown as ␀, lone surrogates (not UTF-8) as U+FFFD."""
    if text.isascii():
        return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text
    if "\x00" in text:
        text = text.replace("\x00", NUL_REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def pg_value(value: _T) -> _T:
    """``pg_text`` applied to every string in ``value`` (lists, tuples and dict keys and values too)."""
    if isinstance(value, str):
        return pg_text(value)  # type: ignore[return-value]
    if isinstance(value, list):
        return [pg_value(v) for v in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(pg_value(v) for v in value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {pg_value(k): pg_value(v) for k, v in value.items()}  # type: ignore[return-value]
    return value


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
        )


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


_UPSERT_ORDER = """
INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id, account,
    symbol, side, type, time_in_force, qty, price, stop_price, peg_type, peg_offset, expire_at, broker,
    broker_order_id, status, filled_qty, avg_price, reason, flags, version, created_at, updated_at, risk_decision)
VALUES (%(order_id)s, %(workflow_id)s, %(idempotency_key)s, %(request_hash)s, %(client_id)s, %(client_order_id)s,
    %(account)s, %(symbol)s, %(side)s, %(type)s, %(time_in_force)s, %(qty)s, %(price)s, %(stop_price)s,
    %(peg_type)s, %(peg_offset)s, %(expire_at)s, %(broker)s, %(broker_order_id)s, %(status)s, %(filled_qty)s,
    %(avg_price)s, %(reason)s, %(flags)s, %(version)s, %(created_at)s, %(updated_at)s, %(risk_decision)s)
ON CONFLICT (order_id) DO UPDATE SET
    risk_decision = COALESCE(EXCLUDED.risk_decision, orders.risk_decision),
    qty = EXCLUDED.qty, price = EXCLUDED.price, stop_price = EXCLUDED.stop_price,
    peg_type = EXCLUDED.peg_type, peg_offset = EXCLUDED.peg_offset,
    broker_order_id = EXCLUDED.broker_order_id, status = EXCLUDED.status, filled_qty = EXCLUDED.filled_qty,
    avg_price = EXCLUDED.avg_price, reason = EXCLUDED.reason, flags = EXCLUDED.flags,
    version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE orders.version <= EXCLUDED.version AND orders.request_hash = EXCLUDED.request_hash
"""
#: The order row's owner (its request hash), locked for the booking's transaction.
_LOCK_ORDER = "SELECT request_hash, status FROM orders WHERE order_id = %s FOR UPDATE"
#: A booking refused because the order's row belongs to other terms (kind of the break it records).
FOREIGN_BOOKING = BreakKind.BOOKING_FOR_OTHER_TERMS


#: Events whose first booking has effects beyond the timeline (streaks, counters).
_COUNTED_KINDS = frozenset({OrderEventKind.ACCEPT, OrderEventKind.REJECT, TimelineKind.OVERFILL_REFUSED})


def _identity(kind: str, exec_id: str | None) -> tuple[str, str | None]:
    # An order is accepted, or rejected, once (its submission's outcome); an overfill is refused per report.
    overfill = kind == TimelineKind.OVERFILL_REFUSED
    return (str(kind), pg_text(exec_id) if overfill and exec_id is not None else None)


class OrderStoreActivities:
    """Writes order progress to Postgres."""

    def __init__(self, *, pool: AsyncConnectionPool, instruments: InstrumentCatalog, policy: PolicyStore) -> None:
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
        booked = 0
        # Pipeline mode: the statements go out together and the round trips are only where a result is
        # needed (whether a fill is new, the position to update) and at COMMIT, instead of one per statement.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            # First: lock the order's row (bookings of one order never interleave) and see whose it is. A row
            # holds one request's terms for good: a run for other terms under the same order id (a reused
            # idempotency key, refused IDEMPOTENCY_CONFLICT) never writes over it, its timeline, its
            # reservation or its ledger; the attempt is recorded as a break instead.
            cur = await conn.execute(_LOCK_ORDER, (snap.order_id,))
            owner = await cur.fetchone()
            if owner is not None and owner["request_hash"] != snap.request_hash:
                await self._foreign_booking(conn, inp, owner)
                return 0, []
            params: dict[str, Any] = pg_value(snap.model_dump())
            params["status"] = snap.status.value
            params["workflow_id"] = workflow_id_for(snap.order_id)
            decision = inp.decision
            params["risk_decision"] = None if decision is None else Jsonb(pg_value(decision.model_dump(mode="json")))
            await conn.execute(_UPSERT_ORDER, params)
            new_events = await self._append_events(conn, snap.order_id, snap.version, inp.events)
            for fill in inp.fills:
                if await self._book_fill(conn, fill):
                    booked += 1
            await self._update_reservation(conn, snap)
            await self._circuit_breaker(conn, snap, new_events)
            for brk in inp.breaks:
                cur = await conn.execute(
                    "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail) VALUES (%s,%s,%s,%s)"
                    " ON CONFLICT DO NOTHING RETURNING id",
                    (snap.order_id, snap.broker, brk.kind.value, pg_text(brk.text)),
                )
                if await cur.fetchone():
                    RECONCILIATION_BREAKS.labels(broker=snap.broker, kind=brk.kind.value).inc()
        return booked, new_events

    @staticmethod
    async def _foreign_booking(conn: Any, inp: PersistInput, owner: dict[str, Any]) -> None:
        """Refuse a booking whose order row belongs to other terms: log it and record a break on the order."""
        snap = inp.snapshot
        brk = Break(
            kind=FOREIGN_BOOKING,
            detail=f"a booking of order {snap.order_id} for other terms (request {snap.request_hash}, "
            f"{snap.status.value}: {snap.side} {snap.qty:f} {snap.symbol}) was refused; the row belongs to "
            f"request {owner['request_hash']} ({owner['status']}) and was left as it was",
        )
        detail = pg_text(brk.text)
        log.error("%s (%d event(s), %d fill(s) not booked)", detail, len(inp.events), len(inp.fills))
        cur = await conn.execute(
            "INSERT INTO reconciliation_breaks (order_id, broker, kind, detail) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (snap.order_id, snap.broker, brk.kind.value, detail),
        )
        if await cur.fetchone():
            RECONCILIATION_BREAKS.labels(broker=snap.broker, kind=brk.kind.value).inc()

    @staticmethod
    async def _append_events(conn: Any, order_id: str, version: int, events: list[OrderEvent]) -> list[OrderEvent]:
        """Write ``events`` over their ``seq`` and drop rows beyond ``version`` (the order's event count).

        Returns the events the order did not have before, by what they are (``_identity``), not by row:
        a booking retried under a different numbering counts nothing twice.
        """
        if not events:
            return []
        watched = [e for e in events if e.kind in _COUNTED_KINDS]
        known_cur = None
        if watched:
            known_cur = await conn.execute(
                "SELECT kind, data->>'exec_id' AS exec_id FROM order_events WHERE order_id = %s AND kind = ANY(%s)",
                (order_id, sorted({e.kind for e in watched})),
            )
        # Only a booking at least as new as the order row writes (a late, stale one changes nothing).
        await conn.execute(
            "INSERT INTO order_events (order_id, seq, at, kind, status, detail, actor, data)"
            " SELECT %s, * FROM unnest(%s::int[], %s::timestamptz[], %s::text[], %s::text[], %s::text[], %s::text[],"
            " %s::jsonb[]) WHERE (SELECT version FROM orders WHERE order_id = %s) <= %s"
            " ON CONFLICT (order_id, seq) DO UPDATE SET at = EXCLUDED.at, kind = EXCLUDED.kind,"
            " status = EXCLUDED.status, detail = EXCLUDED.detail, actor = EXCLUDED.actor, data = EXCLUDED.data"
            " WHERE (order_events.at, order_events.kind, order_events.status, order_events.detail,"
            " order_events.actor, order_events.data) IS DISTINCT FROM"
            " (EXCLUDED.at, EXCLUDED.kind, EXCLUDED.status, EXCLUDED.detail, EXCLUDED.actor, EXCLUDED.data)",
            (
                order_id,
                [e.seq for e in events],
                [e.at for e in events],
                [e.kind.value for e in events],
                [e.status.value for e in events],
                [pg_text(e.detail) for e in events],
                [None if e.actor is None else pg_text(e.actor) for e in events],
                [Jsonb(pg_value(e.data)) for e in events],
                order_id,
                version,
            ),
        )
        await conn.execute(
            "DELETE FROM order_events WHERE order_id = %s AND seq > %s"
            " AND (SELECT version FROM orders WHERE order_id = %s) = %s",
            (order_id, version, order_id, version),
        )
        if known_cur is None:
            return []
        known = {_identity(row["kind"], row["exec_id"]) for row in await known_cur.fetchall()}
        new: list[OrderEvent] = []
        for event in watched:
            key = _identity(event.kind, event.data.get("exec_id"))
            if key not in known:
                known.add(key)
                new.append(event)
        return new

    async def _update_reservation(self, conn: Any, snap: OrderSnapshot) -> None:
        # The reservation follows the order: what is still open, at its current price; nothing once closed.
        if snap.status.is_terminal:
            await conn.execute(
                "UPDATE risk_reservations SET qty_open = 0, notional = 0, margin = 0, released_at = now(),"
                " updated_at = now() WHERE order_id = %s AND released_at IS NULL",
                (snap.order_id,),
            )
        elif snap.status is not OrderStatus.PENDING_UPDATE:
            # While an amend is pending the reservation holds the larger of old and new terms, as the amend's
            # risk check left it, stamped with the order version it checked (hold_version). A booking of that
            # version or an older one leaves it alone: the workflow's flusher may have had it in flight while
            # the check ran, and it may commit after the check. Only a newer state (the amend's own events, the
            # broker's answer) sets the terms. Nor does a stale booking (the order row is newer) change them.
            await conn.execute(
                "UPDATE risk_reservations SET qty_open = %(open)s, price = COALESCE(%(price)s, price),"
                " notional = %(open)s * COALESCE(%(price)s, price) * quote_rate,"
                " margin = %(open)s * COALESCE(%(price)s, price) * quote_rate / leverage, updated_at = now()"
                " WHERE order_id = %(id)s AND released_at IS NULL"
                " AND (hold_version IS NULL OR hold_version < %(version)s)"
                " AND (SELECT version FROM orders WHERE order_id = %(id)s) = %(version)s",
                {
                    "open": max(snap.qty - snap.filled_qty, Decimal(0)),
                    "price": snap.price or snap.stop_price,
                    "id": snap.order_id,
                    "version": snap.version,
                },
            )

    async def _circuit_breaker(self, conn: Any, snap: OrderSnapshot, events: list[OrderEvent]) -> None:
        # N broker rejections in a row halt the account and the broker; any acceptance resets the streaks.
        outcomes = [e for e in events if e.kind in (OrderEventKind.REJECT, OrderEventKind.ACCEPT)]
        if not outcomes:
            return
        limit: int | None = None
        for scope, key in (("ACCOUNT", snap.account), ("BROKER", snap.broker)):
            for event in outcomes:
                if event.kind is OrderEventKind.ACCEPT:
                    # Only a streak that is running needs resetting: writing zero over zero made every booking
                    # of an acceptance lock the broker's one row until its commit (and cost a policy read).
                    await conn.execute(
                        "UPDATE risk_reject_streaks SET streak = 0, updated_at = now()"
                        " WHERE scope = %s AND scope_key = %s AND streak <> 0",
                        (scope, key),
                    )
                    continue
                if limit is None:
                    limit = (await self._policy.load(conn)).policy.circuit_breaker_rejections
                cur = await conn.execute(
                    "INSERT INTO risk_reject_streaks (scope, scope_key, streak) VALUES (%s, %s, 1)"
                    " ON CONFLICT (scope, scope_key) DO UPDATE SET streak = risk_reject_streaks.streak + 1,"
                    " updated_at = now() RETURNING streak",
                    (scope, key),
                )
                streak = (await cur.fetchone())["streak"]
                if streak != limit:
                    continue
                reason = pg_text(
                    f"circuit breaker: {streak} consecutive broker rejections (last: {event.detail or 'no reason'})"
                )
                await conn.execute(
                    "INSERT INTO trading_state (scope, scope_key, state, reason, updated_by)"
                    " VALUES (%s, %s, 'HALTED', %s,"
                    " 'circuit-breaker') ON CONFLICT (scope, scope_key) DO UPDATE SET state = 'HALTED',"
                    " reason = EXCLUDED.reason, updated_by = EXCLUDED.updated_by, updated_at = now()",
                    (scope, key, reason),
                )
                await append_audit(
                    conn,
                    actor="circuit-breaker",
                    action="TRADING_STATE_SET",
                    subject=f"{scope}:{key}",
                    detail={"to": "HALTED", "reason": reason, "order": snap.order_id},
                )
                CIRCUIT_BREAKER_TRIPS.labels(scope=scope).inc()

    async def _book_fill(self, conn: Any, fill: Fill) -> bool:
        exec_id = pg_text(fill.exec_id)
        if exec_id != fill.exec_id:
            fill = fill.model_copy(update={"exec_id": exec_id})
        cur = await conn.execute(
            "INSERT INTO fills (broker, exec_id, order_id, account, symbol, side, qty, price, fee, filled_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING RETURNING exec_id",
            (
                fill.broker,
                fill.exec_id,
                fill.order_id,
                fill.account,
                fill.symbol,
                fill.side.value,
                fill.qty,
                fill.price,
                fill.fee,
                fill.filled_at,
            ),
        )
        if await cur.fetchone() is None:
            return False  # booked by an earlier attempt
        await conn.execute(
            "INSERT INTO positions (account, symbol) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (fill.account, fill.symbol),
        )
        cur = await conn.execute(
            "SELECT qty, avg_price, realized_pnl FROM positions WHERE account = %s AND symbol = %s FOR UPDATE",
            (fill.account, fill.symbol),
        )
        row = await cur.fetchone()
        pos = apply_fill(
            PositionState(row["qty"], row["avg_price"], row["realized_pnl"]), fill.side, fill.qty, fill.price
        )
        await conn.execute(
            "UPDATE positions SET qty = %s, avg_price = %s, realized_pnl = %s, updated_at = now()"
            " WHERE account = %s AND symbol = %s",
            (pos.qty, pos.avg_price, pos.realized_pnl, fill.account, fill.symbol),
        )
        inst = self._instruments.get(fill.symbol)
        currency = inst.quote_currency if inst else "USD"
        await conn.execute(
            "INSERT INTO cash (account, currency, balance) VALUES (%s, %s, %s)"
            " ON CONFLICT (account, currency) DO UPDATE SET balance = cash.balance + EXCLUDED.balance,"
            " updated_at = now()",
            (fill.account, currency, cash_delta(fill.side, fill.qty, fill.price, fill.fee)),
        )
        return True
