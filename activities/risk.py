"""The risk activities: gather the account state, run the pluggable check, record the decision and reserve.

``check_order`` runs as a local activity of the order workflow (the decision is what the REST caller waits
for). In one Postgres transaction it reads the policy and the account, decides, takes the counters that span
accounts, writes the order row with its decision, takes the order's reservation (what it holds of position,
exposure and buying power until it is final) and appends an audit entry. A crash leaves all of it or none.

**Serialization.** Decisions serialize per account and per client (two transaction-level advisory locks,
always taken account first), never firm-wide: decisions for different accounts run in parallel. What spans
accounts is taken atomically from counter rows by ``risk_take()`` (migration 0011) in the same transaction:
the firm-wide and per-broker totals (each account's contribution replaced under the total's row lock) and
the per-symbol and global velocity. Those rows, and the audit chain, are taken by statements sent together
with the COMMIT (pipeline mode), so no round trip to this process happens while a firm-wide lock is held.
If ``risk_take`` finds a limit breached it aborts the transaction; the decision is then made again
"carefully" (the counters are read under their locks and the breach becomes a reason).

The account is read in one statement (positions, working orders and equity marks from one snapshot), so a
booking that commits during the gather is seen whole or not at all; bookings only ever shrink an account's
worst case. The broker's session check runs on the decision's own connection.

A retry of ``check_order`` returns the stored decision only when it was made for the same request (same
request hash); a stored decision for other terms is never adopted (``IDEMPOTENCY_CONFLICT``, no reservation).

**Prices.** Reference prices and FX rates come through one seam, ``ReferenceData`` (``reference_price`` of a
symbol for a broker, ``fx_rate`` between two currencies); ``FeedReferenceData`` answers from the in-process
price feed. No rate is a denial (``NO_FX_RATE``), never a conversion at 1.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from brokers import SessionCheck
from brokers.base import BrokerCapabilities
from core.audit import queue_audit
from core.domain import OrderRequest, OrderSide, RiskDecision, RiskReason, TradingState, utcnow, workflow_id_for
from core.instruments import InstrumentCatalog
from core.metrics import ORDER_LATENCY
from core.policy import PolicyStore
from core.risk import (
    AccountState,
    Exposure,
    Limits,
    PolicySet,
    PositionView,
    ReasonCode,
    ReservationView,
    RiskCheck,
    account_equity,
    basic_check,
    exposure_legs,
    order_reduces,
    valuation_price,
    velocity_message,
)
from core.settings import Settings

__all__ = [
    "AmendCheck",
    "FeedReferenceData",
    "MarketData",
    "Priced",
    "ReferenceData",
    "RiskActivities",
    "RiskGatherer",
]

#: Advisory lock namespaces (first key of the two-key form): one lock per account, one per client.
_ACCOUNT_LOCK = 0x52534B41  # "RSKA"
_CLIENT_LOCK = 0x52534B43  # "RSKC"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_LIMIT_BREACH = "exodus-risk-limit"
D0 = Decimal(0)
D1 = Decimal(1)


# ------------------------------------------------------------------------------------------------ prices


class Priced(NamedTuple):
    """A price or rate, or why there is none (a reason code and message the check reports)."""

    value: Decimal | None
    code: str | None = None
    message: str | None = None


class ReferenceData(Protocol):
    """The one seam between risk and market data: what the gatherer asks for prices and rates."""

    async def reference_price(self, symbol: str, broker: str) -> Priced:
        """The price risk values ``symbol`` at for orders to ``broker`` (quote currency)."""
        ...

    async def fx_rate(self, base: str, quote: str) -> Priced:
        """How many units of ``quote`` one unit of ``base`` is worth."""
        ...


class MarketData(Protocol):
    """An in-process price feed (the paper venue)."""

    def reference_price(self, symbol: str) -> Decimal | None:
        """The current mid price of ``symbol``."""
        ...


class FeedReferenceData:
    """Reference prices and FX rates from an in-process feed (every broker priced off the same feed)."""

    def __init__(self, market: MarketData) -> None:
        """Answer from ``market``."""
        self.market = market

    async def reference_price(self, symbol: str, broker: str) -> Priced:
        """The feed's mid price (whatever the broker)."""
        value = self.market.reference_price(symbol)
        return Priced(value) if value else Priced(None)

    async def fx_rate(self, base: str, quote: str) -> Priced:
        """From the feed's FX pairs, direct (``BASEQUOTE``) or inverted (``QUOTEBASE``)."""
        if base == quote:
            return Priced(D1)
        direct = self.market.reference_price(f"{base}{quote}")
        if direct:
            return Priced(direct)
        inverse = self.market.reference_price(f"{quote}{base}")
        if inverse:
            return Priced(D1 / inverse)
        return Priced(None, ReasonCode.NO_FX_RATE, f"no FX rate from {base} to {quote}")


# ------------------------------------------------------------------------------------------------ gathering


class AmendCheck(BaseModel):
    """Input of ``check_amend``: the order as it would be after the amend, and what has filled."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    requested_by: str
    filled_qty: Decimal = Decimal(0)


@dataclass
class Gathered:
    """What one decision read: limits, state, and what the activity needs besides."""

    limits: Limits
    state: AccountState
    policy: PolicySet
    #: Equity marks to store (None: the stored ones are current).
    marks: tuple[Decimal, Decimal] | None
    #: The order's reservation row as it stands (amends).
    hold: dict[str, Any] | None


_ACCOUNT_SQL = """
SELECT 'P' AS k, symbol, qty, avg_price AS price, realized_pnl AS extra, NULL::text AS side, NULL::numeric AS rate,
    NULL::numeric AS leverage, NULL::text AS order_id, NULL::text AS broker, NULL::numeric AS notional
  FROM positions WHERE account = %(account)s
UNION ALL
SELECT 'R', symbol, qty_open, price, NULL, side, quote_rate, leverage, order_id, broker, notional
  FROM risk_reservations WHERE account = %(account)s AND released_at IS NULL
UNION ALL
SELECT 'M', NULL, start_equity, peak_equity, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM risk_equity_marks WHERE account = %(account)s AND day = %(day)s
"""


class RiskGatherer:
    """Reads everything a decision needs, inside the caller's transaction."""

    def __init__(
        self,
        *,
        settings: Settings,
        instruments: InstrumentCatalog,
        capabilities: Mapping[str, BrokerCapabilities],
        market: MarketData | None = None,
        reference: ReferenceData | None = None,
        session_checks: Mapping[str, SessionCheck] | None = None,
        policy: PolicyStore | None = None,
        pool: AsyncConnectionPool | None = None,
    ) -> None:
        """Build the gatherer; prices come from ``reference``, else from the feed ``market``."""
        if reference is None:
            if market is None:
                raise ValueError("RiskGatherer needs reference data or a market feed")
            reference = FeedReferenceData(market)
        self.reference = reference
        self.instruments = instruments
        self.capabilities = capabilities
        self.session_checks = session_checks or {}
        self.policy = policy or PolicyStore(settings.risk)

    async def gather(self, conn: Any, order: OrderRequest, *, amend: bool = False) -> tuple[Limits, AccountState]:
        """The effective limits and the account state for ``order`` (excluding its own reservation)."""
        g = await self.gather_all(conn, order, amend=amend)
        return g.limits, g.state

    async def gather_all(
        self, conn: Any, order: OrderRequest, *, amend: bool = False, filled_qty: Decimal = D0
    ) -> Gathered:
        """Everything for one decision. Every read goes out at once (pipeline mode): one round trip.

        The reads use the cached policy's windows; if the policy changed meanwhile, they are made again.
        """
        while True:
            cached = self.policy.cached
            inst = self.instruments.get(order.symbol)
            limits = cached.limits(order.account, inst, order.broker)
            version_cur = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM risk_policy")
            reads = await self._queue_reads(conn, order, limits, amend)
            session_check = self.session_checks.get(order.broker)
            unavailable = await session_check(conn, order.account) if session_check else None
            version = (await version_cur.fetchone())["v"]
            if version == cached.version:
                return await self._assemble(order, cached, limits, reads, amend, filled_qty, unavailable)
            await self.policy.load(conn)  # the policy changed: reload it and read again with its windows

    async def _queue_reads(self, conn: Any, order: OrderRequest, limits: Limits, amend: bool) -> dict[str, Any]:
        reads: dict[str, Any] = {}
        reads["states"] = await conn.execute(
            "SELECT scope, scope_key, state, reason FROM trading_state WHERE (scope, scope_key) IN"
            " (('GLOBAL', ''), ('ACCOUNT', %s), ('SYMBOL', %s), ('BROKER', %s))",
            (order.account, order.symbol, order.broker),
        )
        # One statement, one snapshot: positions, working orders and equity marks agree with each other.
        reads["account"] = await conn.execute(_ACCOUNT_SQL, {"account": order.account, "day": utcnow().date()})
        if amend:
            return reads
        window = limits.velocity_per_client.window_seconds
        reads["client"] = await conn.execute(
            """
            SELECT
              (SELECT count(*) FROM orders WHERE client_id = %(client)s AND created_at > %(from)s
                 AND created_at <= %(at)s AND order_id <> %(id)s) AS recent,
              (SELECT count(*) FROM risk_reservations WHERE client_id = %(client)s AND released_at IS NULL
                 AND order_id <> %(id)s) AS open
            """,
            {
                "client": order.client_id,
                "at": order.received_at,
                "from": order.received_at - timedelta(seconds=window),
                "id": order.order_id,
            },
        )
        if limits.duplicate_window_seconds > 0:
            # Orders risk refused do not count: an order refused during a HALT may be sent again unchanged.
            reads["dup"] = await conn.execute(
                "SELECT order_id FROM orders WHERE client_id = %s AND symbol = %s AND side = %s AND qty = %s"
                " AND price IS NOT DISTINCT FROM %s AND created_at > %s AND order_id <> %s"
                " AND status <> 'DENIED' AND (risk_decision->>'approved')::boolean IS NOT FALSE LIMIT 1",
                (
                    order.client_id,
                    order.symbol,
                    order.side.value,
                    order.qty,
                    order.price,
                    order.received_at - timedelta(seconds=limits.duplicate_window_seconds),
                    order.order_id,
                ),
            )
        return reads

    async def _assemble(
        self,
        order: OrderRequest,
        policy_set: PolicySet,
        limits: Limits,
        reads: dict[str, Any],
        amend: bool,
        filled_qty: Decimal,
        unavailable: str | None,
    ) -> Gathered:
        inst = self.instruments.get(order.symbol)
        ccy = limits.currency

        state, reason, scope = TradingState.ACTIVE, "", "GLOBAL"
        for row in await reads["states"].fetchall():
            candidate = TradingState(row["state"])
            if _SEVERITY[candidate] > _SEVERITY[state]:
                state, reason = candidate, row["reason"]
                scope = row["scope"] + (f" {row['scope_key']}" if row["scope_key"] else "")

        position_rows: list[dict[str, Any]] = []
        reservations: list[ReservationView] = []
        hold_row: dict[str, Any] | None = None
        marks: dict[str, Any] | None = None
        for row in await reads["account"].fetchall():
            kind = row["k"]
            if kind == "P":
                position_rows.append(row)
            elif kind == "R":
                if row["order_id"] == order.order_id:
                    hold_row = row
                    continue
                reservations.append(_reservation(row))
            else:
                marks = row

        rates: dict[str, Priced] = {}

        async def rate_of(currency: str) -> Priced:
            known = rates.get(currency)
            if known is None:
                known = rates[currency] = await self.reference.fx_rate(currency, ccy)
            return known

        positions: dict[str, PositionView] = {}
        for row in position_rows:
            symbol = row["symbol"]
            pinst = self.instruments.get(symbol)
            cls = policy_set.policy.classes.get(pinst.instrument_class) if pinst else None
            rate = (await rate_of(pinst.quote_currency)).value if pinst else D1
            mark = (await self.reference.reference_price(symbol, order.broker)).value if row["qty"] else None
            positions[symbol] = PositionView.model_construct(
                symbol=symbol,
                qty=row["qty"],
                avg_price=row["price"],
                realized_pnl=row["extra"],
                mark=mark,
                quote_rate=rate,
                leverage=cls.leverage if cls else D1,
                currency=pinst.quote_currency if pinst else "",
            )
        counts: dict[str, Any] = {"recent": 0, "open": 0}
        if "client" in reads:
            counts.update(await reads["client"].fetchone())
        dup = await reads["dup"].fetchone() if "dup" in reads else None

        # Equity marks: the day starts at the equity of the account's first check; the peak only rises.
        equity = account_equity(limits.account_capital, positions)
        start_equity = marks["qty"] if marks else equity
        peak_equity = max(marks["price"], equity) if marks else equity
        new_marks = None if marks is not None and peak_equity == marks["price"] else (start_equity, peak_equity)

        ref = await self.reference.reference_price(order.symbol, order.broker)
        problem = RiskReason(code=ref.code, message=ref.message or ref.code) if ref.value is None and ref.code else None
        quote_rate: Decimal | None = D1
        if inst is not None:
            quote_rate = (await rate_of(inst.quote_currency)).value
        hold = _reservation(hold_row) if hold_row is not None else None
        caps = self.capabilities.get(order.broker)
        account_state = AccountState.model_construct(
            now=utcnow(),
            instrument=inst,
            reference_price=ref.value,
            reference_problem=problem,
            reference_required=False,
            quote_rate=quote_rate,
            trading_state=state,
            trading_state_reason=reason,
            trading_state_scope=scope,
            broker_order_types=caps.order_types if caps else None,
            broker_time_in_force=caps.time_in_force if caps else None,
            broker_unavailable=unavailable,
            positions=positions,
            reservations=reservations,
            open_orders_of_client=counts["open"],
            recent_orders_of_client=counts["recent"],
            recent_orders_of_symbol=0,  # taken atomically with the decision (risk_take)
            recent_orders_global=0,
            duplicate_of=dup["order_id"] if dup else None,
            day_start_equity=start_equity,
            day_peak_equity=peak_equity,
            is_amend=amend,
            open_qty=(order.qty - filled_qty) if amend else None,
            hold=hold if amend else None,
        )
        return Gathered(limits, account_state, policy_set, new_marks, hold_row)

    @staticmethod
    async def record_marks(conn: Any, account: str, state: AccountState) -> None:
        """Store the equity marks the decision used (the day's start, the peak so far)."""
        await conn.execute(
            "INSERT INTO risk_equity_marks (account, day, start_equity, peak_equity) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (account, day) DO UPDATE SET peak_equity = GREATEST(risk_equity_marks.peak_equity,"
            " EXCLUDED.peak_equity)",
            (account, state.now.date(), state.day_start_equity, state.day_peak_equity),
        )


def _reservation(row: dict[str, Any]) -> ReservationView:
    return ReservationView.model_construct(
        order_id=row["order_id"],
        symbol=row["symbol"],
        side=_SIDES[row["side"]],
        qty_open=row["qty"],
        price=row["price"],
        quote_rate=row["rate"],
        leverage=row["leverage"],
        broker=row["broker"] or "",
        notional=row["notional"],
    )


_SIDES = {s.value: s for s in OrderSide}


# ------------------------------------------------------------------------------------------------ deciding


class RiskActivities:
    """Pre-trade risk checks."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        settings: Settings,
        instruments: InstrumentCatalog,
        capabilities: Mapping[str, BrokerCapabilities],
        market: MarketData | None = None,
        reference: ReferenceData | None = None,
        session_checks: Mapping[str, SessionCheck] | None = None,
        check: RiskCheck = basic_check,
        policy: PolicyStore | None = None,
    ) -> None:
        """Build the activities around a pool, the catalogue, the reference data and the check function."""
        self._pool = pool
        self._check = check
        self.gatherer = RiskGatherer(
            settings=settings,
            instruments=instruments,
            market=market,
            reference=reference,
            capabilities=capabilities,
            session_checks=session_checks,
            policy=policy,
            pool=pool,
        )

    # -- the pure part ------------------------------------------------------------------------------

    def _evaluate(self, order: OrderRequest, g: Gathered) -> tuple[RiskDecision, tuple[Exposure, Exposure] | None]:
        """Run the check; never raises for any order (an arithmetic failure is a denial with a reason)."""
        limits, state = g.limits, g.state
        try:
            reasons = self._check(order, limits, state)
            price = valuation_price(order, state.reference_price, limits.price_band_pct)
            rate = state.quote_rate
            notional = None if price is None or rate is None else order.qty * price * rate
            legs = exposure_legs(order, limits, state) if not reasons else None
            if legs is None and not reasons:
                reasons = [RiskReason(code=ReasonCode.RISK_CHECK_FAILED, message=f"{order.summary()} cannot be valued")]
        except (ArithmeticError, ValueError) as e:
            reasons = [
                RiskReason(
                    code=ReasonCode.RISK_CHECK_FAILED,
                    message=f"the risk check could not compute this order ({type(e).__name__}); it is refused",
                )
            ]
            notional, legs = None, None
        return (
            RiskDecision(
                order_id=order.order_id,
                approved=not reasons,
                reasons=reasons,
                reference_price=state.reference_price,
                notional=notional,
                decided_at=state.now,
                request_hash=order.request_hash,
                submission_id=order.submission_id,
            ),
            legs,
        )

    # -- the counters that span accounts ----------------------------------------------------------

    def _counter_input(
        self, order: OrderRequest, g: Gathered, approved: bool, legs: tuple[Exposure, Exposure] | None, amend: bool
    ) -> dict[str, Any] | None:
        """``risk_take``'s input, or None when the decision touches no counter (an amend it refused)."""
        limits = g.limits
        if legs is None:
            if amend:
                return None
            # Refused before it could be valued: only velocity counts it; the account's totals stand.
            payload: dict[str, Any] = {"account": order.account, "approved": False, "exposure": []}
        else:
            without, with_ = legs
            # An order that truly reduces is never refused by a total (it is only recorded in them).
            check = not order_reduces(order, limits, g.state)
            exposure = [
                {
                    "scope": "FIRM",
                    "key": "",
                    "gross_with": str(with_.gross),
                    "gross_without": str(without.gross),
                    "notional_with": str(with_.open_notional),
                    "notional_without": str(without.open_notional),
                    "gross_limit": _str(limits.firm_max_gross_exposure) if check else None,
                    "notional_limit": _str(limits.firm_max_open_notional) if check else None,
                    "gross_code": ReasonCode.FIRM_MAX_GROSS_EXPOSURE,
                    "notional_code": ReasonCode.FIRM_MAX_OPEN_NOTIONAL,
                }
            ]
            for broker in sorted(set(with_.open_notional_by_broker) | set(without.open_notional_by_broker)):
                broker_limit = g.policy.broker_limits(broker).max_open_notional if broker and check else None
                exposure.append(
                    {
                        "scope": "BROKER",
                        "key": broker,
                        "notional_with": str(with_.open_notional_by_broker.get(broker, D0)),
                        "notional_without": str(without.open_notional_by_broker.get(broker, D0)),
                        "notional_limit": _str(broker_limit),
                        "notional_code": ReasonCode.BROKER_MAX_OPEN_NOTIONAL,
                    }
                )
            payload = {"account": order.account, "approved": approved, "exposure": exposure}
        if not amend:
            at_ms = int(order.received_at.timestamp() * 1000)
            payload["at_ms"] = at_ms
            payload["velocity"] = [
                {
                    "scope": "GLOBAL",
                    "key": "",
                    "window_ms": int(limits.velocity_global.window_seconds * 1000),
                    "max": limits.velocity_global.max_orders,
                    "code": ReasonCode.VELOCITY_GLOBAL,
                },
                {
                    "scope": "SYMBOL",
                    "key": order.symbol,
                    "window_ms": int(limits.velocity_per_symbol.window_seconds * 1000),
                    "max": limits.velocity_per_symbol.max_orders,
                    "code": ReasonCode.VELOCITY_SYMBOL,
                },
            ]
        return payload

    async def _take_counters(
        self, conn: Any, payload: dict[str, Any] | None, careful: bool, order: OrderRequest, limits: Limits
    ) -> list[RiskReason]:
        """Take the counters; on the fast path without waiting (a breach aborts the transaction)."""
        if payload is None:
            return []
        cur = await conn.execute("SELECT risk_take(%s, %s) AS breaches", (Jsonb(payload), careful))
        if not careful:
            return []
        row = await cur.fetchone()
        return [_breach_reason(b, order, limits) for b in row["breaches"]]

    # -- the activities -----------------------------------------------------------------------------

    @staticmethod
    async def _lock(conn: Any, order: OrderRequest) -> None:
        # Account first, then client: every decision takes them in this order, so none can deadlock.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s)), pg_advisory_xact_lock(%s, hashtext(%s))",
            (_ACCOUNT_LOCK, order.account, _CLIENT_LOCK, order.client_id),
        )

    @activity.defn(name="check_order")
    async def check_order(self, order: OrderRequest) -> RiskDecision:
        """Decide on a new order; record the order row, the decision, the reservation and an audit entry."""
        started = time.perf_counter()
        async with self._pool.connection() as conn:
            try:
                decision = await self._check_order(conn, order, careful=False)
            except psycopg.errors.RaiseException as e:
                if _LIMIT_BREACH not in str(e):
                    raise
                decision = await self._check_order(conn, order, careful=True)
        ORDER_LATENCY.labels(stage="risk").observe(time.perf_counter() - started)
        return decision

    async def _check_order(self, conn: Any, order: OrderRequest, *, careful: bool) -> RiskDecision:
        # Pipeline mode: statements go out together; round trips only where a result is needed.
        async with conn.pipeline(), conn.transaction():
            await self._lock(conn, order)
            stored_cur = await conn.execute(
                "SELECT request_hash, risk_decision FROM orders WHERE order_id = %s", (order.order_id,)
            )
            g = await self.gatherer.gather_all(conn, order)
            stored = await stored_cur.fetchone()
            if stored is not None and stored["risk_decision"] is not None:
                return await self._stored(conn, order, stored)
            decision, legs = self._evaluate(order, g)
            payload = self._counter_input(order, g, decision.approved, legs, amend=False)
            breaches = await self._take_counters(conn, payload, careful, order, g.limits)
            if breaches:
                decision = decision.model_copy(update={"approved": False, "reasons": [*decision.reasons, *breaches]})
            state = g.state
            if g.marks is not None:
                await self.gatherer.record_marks(conn, order.account, state)
            await conn.execute(
                """
                INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id,
                    client_order_id, account, symbol, side, type, time_in_force, qty, price, stop_price,
                    expire_at, reduce_only, broker, status, reason, risk_decision, version, created_at, updated_at)
                VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'RECEIVED',%s,%s,0,%s,%s)
                ON CONFLICT (order_id) DO UPDATE SET risk_decision = EXCLUDED.risk_decision
                WHERE orders.risk_decision IS NULL
                """,
                (
                    order.order_id,
                    workflow_id_for(order.order_id),
                    order.idempotency_key,
                    order.request_hash,
                    order.client_id,
                    order.client_order_id,
                    order.account,
                    order.symbol,
                    order.side.value,
                    order.type.value,
                    order.time_in_force.value,
                    order.qty,
                    order.price,
                    order.stop_price,
                    order.expire_at,
                    order.reduce_only,
                    order.broker,
                    "; ".join(r.message for r in decision.reasons) or None,
                    Jsonb(decision.model_dump(mode="json")),
                    order.received_at,
                    order.received_at,
                ),
            )
            if decision.approved:
                assert legs is not None
                await self._reserve(conn, order, g.limits, state, legs, amend=False)
            await queue_audit(
                conn,
                actor=order.submitted_by,
                action="RISK_APPROVED" if decision.approved else "RISK_DENIED",
                subject=order.order_id,
                detail={
                    "order": order.summary(),
                    "client": f"{order.client_id}/{order.client_order_id}",
                    "account": order.account,
                    "reasons": [r.model_dump() for r in decision.reasons],
                    "reference_price": str(decision.reference_price),
                    "notional": str(decision.notional),
                    "trading_state": f"{state.trading_state.value} ({state.trading_state_scope})",
                    "policy_version": g.policy.version,
                },
            )
        return decision

    async def _stored(self, conn: Any, order: OrderRequest, stored: dict[str, Any]) -> RiskDecision:
        """A retry: the stored decision if it was made for this request, else a refusal that takes nothing."""
        decision = RiskDecision.model_validate(stored["risk_decision"])
        if stored["request_hash"] == order.request_hash and decision.request_hash in ("", order.request_hash):
            return decision
        conflict = RiskDecision(
            order_id=order.order_id,
            approved=False,
            reasons=[
                RiskReason(
                    code=ReasonCode.IDEMPOTENCY_CONFLICT,
                    message=f"order {order.order_id} was already decided for different terms under this "
                    "idempotency key; that decision is not reused for these",
                )
            ],
            decided_at=utcnow(),
            # The stored order's hash: the caller sees a different body under a used key (409).
            request_hash=stored["request_hash"],
            submission_id=order.submission_id,
        )
        await queue_audit(
            conn,
            actor=order.submitted_by,
            action="RISK_DENIED",
            subject=order.order_id,
            detail={"order": order.summary(), "reasons": [r.model_dump() for r in conflict.reasons]},
        )
        return conflict

    async def _reserve(
        self,
        conn: Any,
        order: OrderRequest,
        limits: Limits,
        state: AccountState,
        legs: tuple[Exposure, Exposure],
        *,
        amend: bool,
    ) -> None:
        price = valuation_price(order, state.reference_price, limits.price_band_pct) or D0
        rate = state.quote_rate or D1
        qty_open = state.open_qty if state.open_qty is not None else order.qty
        params = {
            "id": order.order_id,
            "account": order.account,
            "client": order.client_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": qty_open,
            "price": price,
            "rate": rate,
            "leverage": limits.leverage,
            "broker": order.broker,
        }
        if not amend:
            await conn.execute(
                """
                INSERT INTO risk_reservations (order_id, account, client_id, symbol, side, qty_open, price,
                    quote_rate, leverage, notional, margin, broker)
                VALUES (%(id)s, %(account)s, %(client)s, %(symbol)s, %(side)s, %(qty)s, %(price)s, %(rate)s,
                    %(leverage)s, %(qty)s * %(price)s * %(rate)s, %(qty)s * %(price)s * %(rate)s / %(leverage)s,
                    %(broker)s)
                ON CONFLICT (order_id) DO NOTHING
                """,
                params,
            )
            return
        # An amend holds the larger of its old and new terms until the broker confirms or refuses the
        # replace; the booking after the broker's answer sets the real terms (activities/persistence.py).
        await conn.execute(
            """
            UPDATE risk_reservations SET qty_open = GREATEST(qty_open, %(qty)s), price = GREATEST(price, %(price)s),
                notional = GREATEST(qty_open, %(qty)s) * GREATEST(price, %(price)s) * quote_rate,
                margin = GREATEST(qty_open, %(qty)s) * GREATEST(price, %(price)s) * quote_rate / leverage,
                broker = coalesce(broker, %(broker)s), updated_at = now()
            WHERE order_id = %(id)s AND released_at IS NULL
            """,
            params,
        )

    @activity.defn(name="check_amend")
    async def check_amend(self, request: AmendCheck) -> RiskDecision:
        """Decide on an order's new terms; if approved, its reservation holds the larger of old and new."""
        async with self._pool.connection() as conn:
            try:
                return await self._check_amend(conn, request, careful=False)
            except psycopg.errors.RaiseException as e:
                if _LIMIT_BREACH not in str(e):
                    raise
                return await self._check_amend(conn, request, careful=True)

    async def _check_amend(self, conn: Any, request: AmendCheck, *, careful: bool) -> RiskDecision:
        order = request.order
        async with conn.pipeline(), conn.transaction():
            await self._lock(conn, order)
            g = await self.gatherer.gather_all(conn, order, amend=True, filled_qty=request.filled_qty)
            decision, legs = self._evaluate(order, g)
            payload = self._counter_input(order, g, decision.approved, legs, amend=True)
            breaches = await self._take_counters(conn, payload, careful, order, g.limits)
            if breaches:
                decision = decision.model_copy(update={"approved": False, "reasons": [*decision.reasons, *breaches]})
            if g.marks is not None:
                await self.gatherer.record_marks(conn, order.account, g.state)
            if decision.approved:
                assert legs is not None
                await self._reserve(conn, order, g.limits, g.state, legs, amend=True)
            await queue_audit(
                conn,
                actor=request.requested_by,
                action="RISK_AMEND_APPROVED" if decision.approved else "RISK_AMEND_DENIED",
                subject=order.order_id,
                detail={"order": order.summary(), "reasons": [r.model_dump() for r in decision.reasons]},
            )
        return decision


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _breach_reason(breach: dict[str, Any], order: OrderRequest, limits: Limits) -> RiskReason:
    """A reason for a limit ``risk_take`` found breached."""
    code, ccy = breach["code"], limits.currency
    if code in (ReasonCode.VELOCITY_GLOBAL, ReasonCode.VELOCITY_SYMBOL):
        velocity = limits.velocity_global if code == ReasonCode.VELOCITY_GLOBAL else limits.velocity_per_symbol
        scope = "all clients" if code == ReasonCode.VELOCITY_GLOBAL else f"symbol {order.symbol}"
        return RiskReason(code=code, message=velocity_message(int(breach["count"]), scope, velocity))
    total, others, limit = (Decimal(str(breach[k])) for k in ("total", "others", "limit"))
    what = {
        ReasonCode.FIRM_MAX_GROSS_EXPOSURE: "firm-wide gross exposure (every account, worst case per side)",
        ReasonCode.FIRM_MAX_OPEN_NOTIONAL: "firm-wide notional of working orders (every account)",
        ReasonCode.BROKER_MAX_OPEN_NOTIONAL: f"notional of working orders at broker {breach.get('key')}",
    }.get(code, code)
    return RiskReason(
        code=code,
        message=f"{what} would be {total:,.2f} {ccy} ({others:,.2f} without account {order.account}); "
        f"the limit is {limit:,.2f} {ccy}",
        field="qty",
    )
