"""The risk activity: gather the account state, run the pluggable check, record the decision.

It runs as a local activity of the order workflow (no task queue hop; the decision is what the REST
caller waits for). It is idempotent: the decision is stored with the order row in the same transaction
as the audit entry, and a retry returns the stored decision instead of deciding again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Protocol

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from brokers import SessionCheck
from brokers.base import BrokerCapabilities
from core.audit import append_audit
from core.domain import OrderRequest, RiskDecision, TradingState, utcnow, workflow_id_for
from core.instruments import InstrumentCatalog
from core.metrics import ORDER_LATENCY
from core.risk import AccountState, RiskCheck, RiskPolicy, basic_check
from core.settings import Settings

__all__ = ["AmendCheck", "MarketData", "RiskActivities"]


class MarketData(Protocol):
    """Where reference prices come from."""

    def reference_price(self, symbol: str) -> Decimal | None:
        """The current mid price of ``symbol``."""
        ...


class AmendCheck(BaseModel):
    """Input of ``check_amend``: the order as it would be after the amend."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    requested_by: str


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
    ) -> None:
        """Build the activities around a pool, the catalogue, a price source and the check function."""
        self._pool = pool
        self._settings = settings
        self._instruments = instruments
        self._market = market
        self._capabilities = capabilities
        self._session_checks = session_checks or {}
        self._check = check

    def _policy(self) -> RiskPolicy:
        return RiskPolicy(max_notional_per_order=self._settings.risk.max_notional_per_order)

    def _quote_rate(self, quote_currency: str, currency: str) -> Decimal:
        if quote_currency == currency:
            return Decimal(1)
        direct = self._market.reference_price(f"{quote_currency}{currency}")
        if direct:
            return direct
        inverse = self._market.reference_price(f"{currency}{quote_currency}")
        return 1 / inverse if inverse else Decimal(1)

    async def _account_state(self, conn: Any, order: OrderRequest) -> AccountState:
        cur = await conn.execute("SELECT state, reason FROM trading_state WHERE scope = 'GLOBAL' AND scope_key = ''")
        row = await cur.fetchone()
        trading = TradingState(row["state"]) if row else TradingState.ACTIVE
        inst = self._instruments.get(order.symbol)
        caps = self._capabilities.get(order.broker)
        policy_ccy = self._policy().currency
        session_check = self._session_checks.get(order.broker)
        unavailable = await session_check(self._pool, order.account) if session_check else None
        return AccountState(
            instrument=inst,
            reference_price=self._market.reference_price(order.symbol),
            quote_rate=self._quote_rate(inst.quote_currency, policy_ccy) if inst else Decimal(1),
            trading_state=trading,
            trading_state_reason=row["reason"] if row else "",
            broker_order_types=caps.order_types if caps else None,
            broker_time_in_force=caps.time_in_force if caps else None,
            broker_unavailable=unavailable,
            now=utcnow(),
        )

    def _decide(self, order: OrderRequest, state: AccountState) -> RiskDecision:
        policy = self._policy()
        reasons = self._check(order, policy, state)
        price = order.price or order.stop_price or state.reference_price
        return RiskDecision(
            order_id=order.order_id,
            approved=not reasons,
            reasons=reasons,
            reference_price=state.reference_price,
            notional=None if price is None else order.qty * price,
            decided_at=state.now,
            request_hash=order.request_hash,
            submission_id=order.submission_id,
        )

    @activity.defn(name="check_order")
    async def check_order(self, order: OrderRequest) -> RiskDecision:
        """Decide on a new order and record the order row, the decision and an audit entry atomically."""
        started = time.perf_counter()
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT risk_decision FROM orders WHERE order_id = %s", (order.order_id,))
            row = await cur.fetchone()
            if row is not None and row["risk_decision"] is not None:
                return RiskDecision.model_validate(row["risk_decision"])
            state = await self._account_state(conn, order)
            decision = self._decide(order, state)
            await conn.execute(
                """
                INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id,
                    client_order_id, account, symbol, side, type, time_in_force, qty, price, stop_price,
                    expire_at, broker, status, reason, risk_decision, version, created_at, updated_at)
                VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'RECEIVED',%s,%s,0,%s,%s)
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
                    order.broker,
                    "; ".join(r.message for r in decision.reasons) or None,
                    Jsonb(decision.model_dump(mode="json")),
                    order.received_at,
                    order.received_at,
                ),
            )
            await append_audit(
                conn,
                actor=order.submitted_by,
                action="RISK_APPROVED" if decision.approved else "RISK_DENIED",
                subject=order.order_id,
                detail={
                    "order": order.summary(),
                    "client": f"{order.client_id}/{order.client_order_id}",
                    "reasons": [r.model_dump() for r in decision.reasons],
                    "reference_price": str(decision.reference_price),
                    "trading_state": state.trading_state.value,
                },
            )
        ORDER_LATENCY.labels(stage="risk").observe(time.perf_counter() - started)
        return decision

    @activity.defn(name="check_amend")
    async def check_amend(self, request: AmendCheck) -> RiskDecision:
        """Decide on an order's new terms (amend); records an audit entry, not an order row."""
        async with self._pool.connection() as conn, conn.transaction():
            state = await self._account_state(conn, request.order)
            decision = self._decide(request.order, state)
            await append_audit(
                conn,
                actor=request.requested_by,
                action="RISK_AMEND_APPROVED" if decision.approved else "RISK_AMEND_DENIED",
                subject=request.order.order_id,
                detail={"order": request.order.summary(), "reasons": [r.model_dump() for r in decision.reasons]},
            )
        return decision
