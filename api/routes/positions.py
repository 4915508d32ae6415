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
from store import ledger

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
    async with pool.connection() as conn:
        position_rows = await ledger.positions(
            conn, scope=principal.scope, account=account, symbol=symbol.upper() if symbol else None
        )
        cash_rows = await ledger.cash(conn, scope=principal.scope, account=account)
    positions = [PositionPublic.model_validate(r) for r in position_rows]
    cash = [CashPublic.model_validate(r) for r in cash_rows]
    body = PositionsPublic(data=positions, cash=cash, count=len(positions))
    return JSONResponse(content=body.model_dump(mode="json", by_alias=True))
