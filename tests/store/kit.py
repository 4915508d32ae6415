"""Builders for the store tests: orders, decisions and the order row as both writers build it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from core.domain import OrderRequest, OrderStatus, RiskDecision, RiskReason
from store import Conn
from store.orders import OrderRow, received_row, write_order
from tests.harness import make_order


def decision(order: OrderRequest, *, approved: bool = True, reason: str | None = None) -> RiskDecision:
    reasons = [] if approved else [RiskReason(code="MAX_NOTIONAL", message=reason or "too big")]
    return RiskDecision(
        order_id=order.order_id,
        approved=approved,
        reasons=reasons,
        decided_at=datetime.now(UTC),
        request_hash=order.request_hash,
        submission_id=order.submission_id,
    )


def booked(order: OrderRequest, *, version: int, status: OrderStatus, **changes: Any) -> OrderRow:
    """The row a booking of ``order`` at ``version`` writes (as ``OrderSnapshot.row`` builds it)."""
    row = received_row(order, decision(order))
    row.update({"risk_decision": None, "version": version, "status": status.value, "updated_at": datetime.now(UTC)})
    row.update(changes)  # type: ignore[typeddict-item]
    return row


async def decided(conn: Conn, **order: Any) -> OrderRequest:
    """An order whose decision wrote its row."""
    request = make_order(**order)
    await write_order(conn, received_row(request, decision(request)), booking=False)
    return request


D = Decimal
