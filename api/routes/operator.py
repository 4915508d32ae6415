"""Operator controls: the trading state (kill switch)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ActorDep, PoolDep
from api.schemas import TradingStateBody, TradingStatePublic
from core.audit import append_audit
from core.domain import TradingState
from core.metrics import TRADING_HALTED

__all__ = ["router"]

router = APIRouter(prefix="/operator", tags=["operator"])

_COLUMNS = "scope, scope_key, state, reason, updated_by, updated_at"


@router.get("/trading-state", response_model=list[TradingStatePublic])
async def get_trading_state(pool: PoolDep) -> JSONResponse:
    """Current trading states (GLOBAL: the kill switch)."""
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_COLUMNS} FROM trading_state ORDER BY scope, scope_key")
        rows = [TradingStatePublic(**r) for r in await cur.fetchall()]
    return JSONResponse(content=[r.model_dump(mode="json", by_alias=True) for r in rows])


@router.post("/trading-state", response_model=TradingStatePublic)
async def set_trading_state(body: TradingStateBody, pool: PoolDep, actor: ActorDep) -> JSONResponse:
    """Set the trading state: HALTED refuses every new order (cancels still pass); ACTIVE resumes."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "SELECT state FROM trading_state WHERE scope = %s AND scope_key = '' FOR UPDATE", (body.scope,)
        )
        old = await cur.fetchone()
        cur = await conn.execute(
            "INSERT INTO trading_state (scope, scope_key, state, reason, updated_by, updated_at)"
            " VALUES (%s, '', %s, %s, %s, now())"
            " ON CONFLICT (scope, scope_key) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,"
            " updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at"
            f" RETURNING {_COLUMNS}",
            (body.scope, body.state.value, body.reason, actor),
        )
        row = await cur.fetchone()
        await append_audit(
            conn,
            actor=actor,
            action="TRADING_STATE_SET",
            subject=body.scope,
            detail={"from": old["state"] if old else None, "to": body.state.value, "reason": body.reason},
        )
    TRADING_HALTED.set(1 if body.state is TradingState.HALTED else 0)
    return JSONResponse(content=TradingStatePublic(**row).model_dump(mode="json", by_alias=True))
