"""The risk activities: gather the account state, run the pluggable check, record the decision and reserve.

``check_order`` runs as a local activity of the order workflow (the decision is what the REST caller waits
for). In one Postgres transaction, serialized with every other decision by an advisory lock, it reads the
policy and the account, decides, writes the order row with its decision, takes the order's reservation
(what it holds of position, exposure and buying power until it is final) and appends an audit entry. So two
concurrent orders can never jointly breach a limit, and a crash leaves either all of it or none of it. A
retry returns the stored decision instead of deciding again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from brokers import SessionCheck
from brokers.base import BrokerCapabilities
from core.audit import append_audit
from core.domain import OrderRequest, RiskDecision, TradingState, utcnow, workflow_id_for
from core.instruments import InstrumentCatalog
from core.marketdata import MarketData, PriceBook
from core.metrics import ORDER_LATENCY
from core.policy import PolicyStore
from core.risk import (
    AccountState,
    Limits,
    PolicySet,
    PositionView,
    ReservationView,
    RiskCheck,
    account_equity,
    basic_check,
    valuation_price,
)
from core.settings import Settings

__all__ = ["AmendCheck", "MarketData", "RiskActivities", "RiskGatherer"]

_DECISION_LOCK = 0x5249534B  # "RISK"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


class AmendCheck(BaseModel):
    """Input of ``check_amend``: the order as it would be after the amend, and what has filled."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    requested_by: str
    filled_qty: Decimal = Decimal(0)


class RiskGatherer:
    """Reads everything a decision needs, inside the caller's transaction."""

    def __init__(
        self,
        *,
        settings: Settings,
        instruments: InstrumentCatalog,
        market: MarketData,
        capabilities: Mapping[str, BrokerCapabilities],
        session_checks: Mapping[str, SessionCheck] | None = None,
        policy: PolicyStore | None = None,
        pool: AsyncConnectionPool | None = None,
    ) -> None:
        """Build the gatherer."""
        self.instruments = instruments
        self.market = market
        self.capabilities = capabilities
        self.session_checks = session_checks or {}
        self.policy = policy or PolicyStore(settings.risk)
        self._pool = pool

    @staticmethod
    def quote_rate(prices: PriceBook, quote_currency: str, currency: str) -> Decimal:
        """Value of one unit of ``quote_currency`` in ``currency``, from the market data's FX quotes."""
        return prices.rate(quote_currency, currency) or Decimal(1)

    async def gather(self, conn: Any, order: OrderRequest, *, amend: bool = False) -> tuple[Limits, AccountState]:
        """The effective limits and the account state for ``order`` (excluding its own reservation).

        Every read goes out at once (pipeline mode): one round trip to Postgres, not one per query. The
        reads use the cached policy's windows; if the policy changed meanwhile, they are made again.
        """
        while True:
            cached = self.policy.cached
            async with conn.pipeline():
                version_cur = await conn.execute("SELECT coalesce(max(version), 0) AS v FROM risk_policy")
                reads = await self._queue_reads(
                    conn, order, cached.limits(order.account, self.instruments.get(order.symbol)), amend
                )
                version = (await version_cur.fetchone())["v"]
                if version == cached.version:
                    return await self._assemble(order, cached, reads, amend)
            await self.policy.load(conn)  # the policy changed: reload it and read again with its windows

    async def _queue_reads(self, conn: Any, order: OrderRequest, limits: Limits, amend: bool) -> dict[str, Any]:
        reads: dict[str, Any] = {}
        reads["states"] = await conn.execute(
            "SELECT scope, scope_key, state, reason FROM trading_state WHERE (scope, scope_key) IN"
            " (('GLOBAL', ''), ('ACCOUNT', %s), ('SYMBOL', %s), ('BROKER', %s))",
            (order.account, order.symbol, order.broker),
        )
        reads["positions"] = await conn.execute(
            "SELECT symbol, qty, avg_price, realized_pnl FROM positions WHERE account = %s", (order.account,)
        )
        reads["reservations"] = await conn.execute(
            "SELECT order_id, symbol, side, qty_open, price, quote_rate, leverage FROM risk_reservations"
            " WHERE account = %s AND released_at IS NULL AND order_id <> %s",
            (order.account, order.order_id),
        )
        reads["marks"] = await conn.execute(
            "SELECT start_equity, peak_equity FROM risk_equity_marks WHERE account = %s AND day = %s",
            (order.account, utcnow().date()),
        )
        # Reference price, marks and FX rates: the market data service's quote store, in this round trip.
        reads["quotes"] = await self.market.queue(
            conn, symbol=order.symbol, account=order.account, currency=limits.currency
        )
        if amend:
            return reads
        windows = (limits.velocity_per_client, limits.velocity_per_symbol, limits.velocity_global)
        reads["velocity"] = await conn.execute(
            """
            SELECT
              count(*) FILTER (WHERE client_id = %(client)s AND created_at > %(at)s - %(wc)s) AS client,
              count(*) FILTER (WHERE symbol = %(symbol)s AND created_at > %(at)s - %(ws)s) AS symbol,
              count(*) FILTER (WHERE created_at > %(at)s - %(wg)s) AS overall
            FROM orders WHERE created_at > %(at)s - %(wmax)s AND created_at <= %(at)s AND order_id <> %(id)s
            """,
            {
                "client": order.client_id,
                "symbol": order.symbol,
                "at": order.received_at,
                "id": order.order_id,
                "wc": timedelta(seconds=windows[0].window_seconds),
                "ws": timedelta(seconds=windows[1].window_seconds),
                "wg": timedelta(seconds=windows[2].window_seconds),
                "wmax": timedelta(seconds=max(w.window_seconds for w in windows)),
            },
        )
        reads["open"] = await conn.execute(
            "SELECT count(*) AS n FROM risk_reservations"
            " WHERE client_id = %s AND released_at IS NULL AND order_id <> %s",
            (order.client_id, order.order_id),
        )
        if limits.duplicate_window_seconds > 0:
            reads["dup"] = await conn.execute(
                "SELECT order_id FROM orders WHERE client_id = %s AND symbol = %s AND side = %s AND qty = %s"
                " AND price IS NOT DISTINCT FROM %s AND created_at > %s AND order_id <> %s LIMIT 1",
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
        self, order: OrderRequest, policy_set: PolicySet, reads: dict[str, Any], amend: bool
    ) -> tuple[Limits, AccountState]:
        inst = self.instruments.get(order.symbol)
        limits = policy_set.limits(order.account, inst)
        ccy = limits.currency
        now = utcnow()
        prices = await self.market.book(reads["quotes"], broker=order.broker, now=now)
        ref = prices.reference(order.symbol)

        state, reason, scope = TradingState.ACTIVE, "", "GLOBAL"
        for row in await reads["states"].fetchall():
            candidate = TradingState(row["state"])
            if _SEVERITY[candidate] > _SEVERITY[state]:
                state, reason = candidate, row["reason"]
                scope = row["scope"] + (f" {row['scope_key']}" if row["scope_key"] else "")

        positions: dict[str, PositionView] = {}
        for row in await reads["positions"].fetchall():
            pinst = self.instruments.get(row["symbol"])
            cls = policy_set.policy.classes.get(pinst.instrument_class) if pinst else None
            positions[row["symbol"]] = PositionView(
                symbol=row["symbol"],
                qty=row["qty"],
                avg_price=row["avg_price"],
                realized_pnl=row["realized_pnl"],
                mark=prices.mark(row["symbol"]),
                quote_rate=self.quote_rate(prices, pinst.quote_currency, ccy) if pinst else Decimal(1),
                leverage=cls.leverage if cls else Decimal(1),
            )
        reservations = [ReservationView(**row) for row in await reads["reservations"].fetchall()]
        counts: dict[str, Any] = {"client": 0, "symbol": 0, "overall": 0}
        if "velocity" in reads:
            counts.update(await reads["velocity"].fetchone())
        open_orders = (await reads["open"].fetchone())["n"] if "open" in reads else 0
        dup = await reads["dup"].fetchone() if "dup" in reads else None

        # Equity marks: the day starts at the equity of the account's first check; the peak only rises.
        # (Written by the caller with the decision, see ``record_marks``.)
        equity = account_equity(limits.account_capital, positions)
        marks = await reads["marks"].fetchone()
        start_equity = marks["start_equity"] if marks else equity
        peak_equity = max(marks["peak_equity"], equity) if marks else equity

        caps = self.capabilities.get(order.broker)
        session_check = self.session_checks.get(order.broker)
        pool = self._pool
        unavailable = await session_check(pool, order.account) if session_check and pool is not None else None
        return limits, AccountState(
            now=now,
            instrument=inst,
            reference_price=ref.price,
            reference_source=ref.source,
            reference_age_seconds=ref.view.age_seconds if ref.view else None,
            reference_problem=ref.problem(),
            reference_stale=ref.status == "STALE_REFERENCE_PRICE",
            own_price_without_quote=ref.own_price_without_quote,
            quote_rate=self.quote_rate(prices, inst.quote_currency, ccy) if inst else Decimal(1),
            trading_state=state,
            trading_state_reason=reason,
            trading_state_scope=scope,
            broker_order_types=caps.order_types if caps else None,
            broker_time_in_force=caps.time_in_force if caps else None,
            broker_unavailable=unavailable,
            positions=positions,
            reservations=reservations,
            open_orders_of_client=open_orders,
            recent_orders_of_client=counts["client"],
            recent_orders_of_symbol=counts["symbol"],
            recent_orders_global=counts["overall"],
            duplicate_of=dup["order_id"] if dup else None,
            day_start_equity=start_equity,
            day_peak_equity=peak_equity,
            is_amend=amend,
        )

    @staticmethod
    async def record_marks(conn: Any, account: str, state: AccountState) -> None:
        """Store the equity marks the decision used (the day's start, the peak so far)."""
        await conn.execute(
            "INSERT INTO risk_equity_marks (account, day, start_equity, peak_equity) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (account, day) DO UPDATE SET peak_equity = GREATEST(risk_equity_marks.peak_equity,"
            " EXCLUDED.peak_equity)",
            (account, state.now.date(), state.day_start_equity, state.day_peak_equity),
        )


def _reference_note(state: AccountState) -> str:
    if state.reference_source is None:
        return "none"
    if state.reference_age_seconds is None:
        return f"{state.reference_source}: no quote"
    return f"{state.reference_source} quote {state.reference_age_seconds:.1f}s old" + (
        " (stale)" if state.reference_stale else ""
    )


class RiskActivities:
    """Pre-trade risk checks."""

    def __init__(
        self,
        *,
        pool: AsyncConnectionPool,
        settings: Settings,
        instruments: InstrumentCatalog,
        market: MarketData,
        capabilities: Mapping[str, BrokerCapabilities],
        session_checks: Mapping[str, SessionCheck] | None = None,
        check: RiskCheck = basic_check,
        policy: PolicyStore | None = None,
    ) -> None:
        """Build the activities around a pool, the catalogue, a price source and the check function."""
        self._pool = pool
        self._check = check
        self.gatherer = RiskGatherer(
            settings=settings,
            instruments=instruments,
            market=market,
            capabilities=capabilities,
            session_checks=session_checks,
            policy=policy,
            pool=pool,
        )

    def _decide(self, order: OrderRequest, limits: Limits, state: AccountState) -> RiskDecision:
        reasons = self._check(order, limits, state)
        price = valuation_price(order, state.reference_price)
        return RiskDecision(
            order_id=order.order_id,
            approved=not reasons,
            reasons=reasons,
            reference_price=state.reference_price,
            notional=None if price is None else order.qty * price * state.quote_rate,
            decided_at=state.now,
            request_hash=order.request_hash,
            submission_id=order.submission_id,
        )

    async def _reserve(
        self, conn: Any, order: OrderRequest, limits: Limits, state: AccountState, qty_open: Decimal
    ) -> None:
        price = valuation_price(order, state.reference_price) or Decimal(0)
        notional = qty_open * price * state.quote_rate
        await conn.execute(
            """
            INSERT INTO risk_reservations (order_id, account, client_id, symbol, side, qty_open, price, quote_rate,
                leverage, notional, margin)
            VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
            ON CONFLICT (order_id) DO UPDATE SET qty_open = EXCLUDED.qty_open, price = EXCLUDED.price,
                notional = EXCLUDED.notional, margin = EXCLUDED.margin, updated_at = now()
            WHERE risk_reservations.released_at IS NULL
            """,
            (
                order.order_id,
                order.account,
                order.client_id,
                order.symbol,
                order.side.value,
                qty_open,
                price,
                state.quote_rate,
                limits.leverage,
                notional,
                notional / limits.leverage,
            ),
        )

    @activity.defn(name="check_order")
    async def check_order(self, order: OrderRequest) -> RiskDecision:
        """Decide on a new order; record the order row, the decision, the reservation and an audit entry."""
        started = time.perf_counter()
        # Pipeline mode: statements go out together; round trips only where a result is needed.
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DECISION_LOCK,))
            cur = await conn.execute("SELECT risk_decision FROM orders WHERE order_id = %s", (order.order_id,))
            limits, state = await self.gatherer.gather(conn, order)
            row = await cur.fetchone()
            if row is not None and row["risk_decision"] is not None:
                return RiskDecision.model_validate(row["risk_decision"])
            decision = self._decide(order, limits, state)
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
                await self._reserve(conn, order, limits, state, order.qty)
            await append_audit(
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
                    "reference": _reference_note(state),
                    "notional": str(decision.notional),
                    "trading_state": f"{state.trading_state.value} ({state.trading_state_scope})",
                    "policy_version": self.gatherer.policy.cached.version,
                },
            )
        ORDER_LATENCY.labels(stage="risk").observe(time.perf_counter() - started)
        return decision

    @activity.defn(name="check_amend")
    async def check_amend(self, request: AmendCheck) -> RiskDecision:
        """Decide on an order's new terms; if approved, its reservation grows to them at once."""
        order = request.order
        async with self._pool.connection() as conn, conn.pipeline(), conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DECISION_LOCK,))
            limits, state = await self.gatherer.gather(conn, order, amend=True)
            decision = self._decide(order, limits, state)
            await self.gatherer.record_marks(conn, order.account, state)
            if decision.approved:
                await self._reserve(conn, order, limits, state, order.qty - request.filled_qty)
            await append_audit(
                conn,
                actor=request.requested_by,
                action="RISK_AMEND_APPROVED" if decision.approved else "RISK_AMEND_DENIED",
                subject=order.order_id,
                detail={"order": order.summary(), "reasons": [r.model_dump() for r in decision.reasons]},
            )
        return decision
