"""The audit log, read-only: every risk decision, operator action, policy, key and account change, refusal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.auth import forbid, requires
from api.deps import PoolDep
from api.edge import EdgeRoute
from core.auth import Permission, Principal
from store.audit import entries

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"], route_class=EdgeRoute)


@router.get("")
async def audit_log(
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.AUDIT_READ)],
    action: str | None = None,
    actor: str | None = None,
    subject: str | None = None,
    before_id: Annotated[int | None, Query(alias="beforeId", ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    """Entries newest first (page back with ``beforeId``), optionally of one action, actor or subject.

    The log is firm-wide, so it needs a principal whose scope is every client and account.
    """
    if not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field=None,
            message="the audit log is firm-wide; it needs a principal whose scope is every client and account",
        )
    async with pool.connection() as conn:
        rows = await entries(conn, action=action, actor=actor, subject=subject, before_id=before_id, limit=limit)
    data = [{**r, "at": r["at"].isoformat()} for r in rows]
    return JSONResponse(content={"data": data, "count": len(data)})
