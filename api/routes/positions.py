"""Positions and cash from the ledger."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import requires
from api.deps import PoolDep
from api.edge import EdgeRoute
from api.schemas import CashPublic, PositionPublic, PositionsPublic
from core.auth import Permission, Principal

__all__ = ["router"]

router = APIRouter(prefix="/positions", tags=["positions"], route_class=EdgeRoute)


@router.get("", response_model=PositionsPublic)
async def list_positions(
    pool: PoolDep,
    principal: Annotated[Principal, requires(Permission.ORDERS_READ)],
    account: str | None = None,
    symbol: str | None = None,
) -> JSONResponse:
    """Positions (optionally of one account or symbol) and the accounts' cash balances, inside the scope."""
    where, params = principal.scope.filter(accounts="account")
    if account:
        where.append("account = %s")
        params.append(account)
    if symbol:
        where.append("symbol = %s")
        params.append(symbol.upper())
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT account, symbol, qty, avg_price, realized_pnl, updated_at FROM positions"
            f" {clause} ORDER BY account, symbol",
            params,
        )
        positions = [PositionPublic(**r) for r in await cur.fetchall()]
        cash_where, cash_params = principal.scope.filter(accounts="account")
        if account:
            cash_where.append("account = %s")
            cash_params.append(account)
        cash_clause = ("WHERE " + " AND ".join(cash_where)) if cash_where else ""
        cur = await conn.execute(
            f"SELECT account, currency, balance, updated_at FROM cash {cash_clause} ORDER BY account, currency",
            cash_params,
        )
        cash = [CashPublic(**r) for r in await cur.fetchall()]
    body = PositionsPublic(data=positions, cash=cash, count=len(positions))
    return JSONResponse(content=body.model_dump(mode="json", by_alias=True))
