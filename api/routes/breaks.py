"""Reconciliation breaks and unmatched reports: list them, and mark one resolved with a reason (audited).

``breaks:read`` (trader, operator, risk, auditor) lists breaks inside the caller's scope (by the order's client
and account and the break's broker; a break of no known order only for a scope with every client and account,
as on the stream). Unmatched reports belong to no order, so they are firm-wide: listing or resolving them needs
a scope with every client and account (and the report's broker in it). ``breaks:resolve`` (operator, risk)
resolves; a break outside the scope is answered 404, as an unknown one, so ids cannot be probed; one already
resolved is 409 saying by whom. Each resolution is written to the audit log in the same transaction, and the
stream announces it (``BREAK_RESOLVED``, ``UNMATCHED_RESOLVED``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from api.auth import forbid, hidden, requires
from api.deps import ActorDep, PoolDep
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Identifier, ReasonText
from core.auth import Permission, Principal
from store import Conn, breaks, reconciliation
from store.audit import append_audit
from store.breaks import BreakRow, UnmatchedRow

__all__ = ["router"]

router = APIRouter(tags=["breaks"], route_class=EdgeRoute)

#: Largest id (Postgres bigint).
_MAX_ID = 2**63 - 1
Status = Literal["open", "acknowledged", "unacknowledged", "resolved", "all"]
UnmatchedStatus = Literal["open", "resolved", "all"]


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class ResolveBody(BaseModel):
    """Why the break or report is resolved (kept with it and in the audit log)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    reason: ReasonText


class BreakPublic(_Out):
    """A break: what does not reconcile, about which order, and its resolution."""

    id: int
    order_id: str | None
    client_id: str | None
    account: str | None
    symbol: str | None
    broker: str
    kind: str
    detail: str
    detected_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None
    #: The difference's natural key for end-of-day breaks (account/symbol, exec id, cl_ord_id); else null.
    ref: str | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledgement: str | None = None

    @classmethod
    def of(cls, row: BreakRow) -> BreakPublic:
        """From the stored row."""
        return cls.model_validate(row)


class UnmatchedPublic(_Out):
    """A report that reached no order workflow, and its resolution."""

    id: int
    broker: str
    exec_id: str
    client_order_id: str
    reason: str
    report: dict[str, Any]
    received_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None

    @classmethod
    def of(cls, row: UnmatchedRow) -> UnmatchedPublic:
        """From the stored row."""
        return cls.model_validate(row)


class BreaksPublic(_Out):
    """A page of breaks, newest first; ``nextBefore`` pages back (null: no more)."""

    data: list[BreakPublic]
    count: int
    next_before: int | None


class UnmatchedListPublic(_Out):
    """A page of unmatched reports, newest first; ``nextBefore`` pages back (null: no more)."""

    data: list[UnmatchedPublic]
    count: int
    next_before: int | None


def _json(body: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump(mode="json", by_alias=True))


def _conflict(what: str, by: str | None, at: datetime | None, resolution: str | None) -> HTTPException:
    when = at.isoformat() if at else "?"
    message = f"{what} was already resolved by {by} at {when} ({resolution})"
    return HTTPException(409, ErrorBody(status="conflict", message=message).model_dump(mode="json", exclude_none=True))


#: What a change of a break or an unmatched report may answer besides its 200.
_CHANGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


def _next_before(data: list[BreakPublic] | list[UnmatchedPublic], limit: int) -> int | None:
    """The id to page back from (None: a page shorter than ``limit`` is the last)."""
    return data[-1].id if len(data) == limit else None


Before = Annotated[int | None, Query(alias="before", ge=1, le=_MAX_ID, description="ids below this one (paging)")]
Limit = Annotated[int, Query(ge=1, le=500)]
StatusQuery = Annotated[
    Status, Query(description="open (default: acknowledged or not), acknowledged, unacknowledged, resolved or all")
]
UnmatchedStatusQuery = Annotated[UnmatchedStatus, Query(description="open (default), resolved or all")]


@router.get("/breaks", response_model=BreaksPublic, responses={422: {"model": ErrorBody}})
async def list_breaks(
    pool: PoolDep,
    principal: Annotated[Principal, requires(Permission.BREAKS_READ)],
    status: StatusQuery = "open",
    broker: Identifier | None = None,
    order_id: Annotated[Identifier | None, Query(alias="orderId")] = None,
    kind: Identifier | None = None,
    before: Before = None,
    limit: Limit = 100,
) -> JSONResponse:
    """Breaks inside the caller's scope, newest first.

    Open ones by default (``status``), of one broker, order (``orderId``) or kind; page back with ``before`` (the
    last id of a page).
    """
    async with pool.connection() as conn:
        rows = await breaks.list_breaks(
            conn,
            scope=principal.scope,
            status=status,
            broker=broker,
            order_id=order_id,
            kind=kind,
            before=before,
            limit=limit,
        )
    data = [BreakPublic.of(r) for r in rows]
    return _json(BreaksPublic(data=data, count=len(data), next_before=_next_before(data, limit)))


@router.post(
    "/breaks/{break_id}/resolve",
    response_model=BreakPublic,
    responses=_CHANGE_ANSWERS,
)
async def resolve_break(
    body: ResolveBody,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_RESOLVE)],
    break_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
) -> JSONResponse:
    """Mark a break resolved with a reason (the caller and the time are kept with it and in the audit log)."""
    async with pool.connection() as conn, conn.transaction():
        row = await _open_break(conn, request, principal, break_id)
        resolved = await breaks.resolve_break(conn, break_id, actor=actor, resolution=body.reason)
        assert resolved is not None  # locked and open above
        await _audit_break(conn, actor, "BREAK_RESOLVED", row, body.reason)
    return _json(BreakPublic.of(resolved))


@router.post(
    "/breaks/{break_id}/acknowledge",
    response_model=BreakPublic,
    responses=_CHANGE_ANSWERS,
)
async def acknowledge_break(
    body: ResolveBody,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_RESOLVE)],
    break_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
) -> JSONResponse:
    """Acknowledge an open break with a note (seen, being looked into): audited; it stays open until resolved."""
    async with pool.connection() as conn, conn.transaction():
        row = await _open_break(conn, request, principal, break_id)
        if row["acknowledged_at"] is not None:
            when = row["acknowledged_at"].isoformat()
            message = (
                f"break {break_id} was already acknowledged by {row['acknowledged_by']} at {when}"
                f" ({row['acknowledgement']})"
            )
            raise HTTPException(
                409, ErrorBody(status="conflict", message=message).model_dump(mode="json", exclude_none=True)
            )
        done = await reconciliation.acknowledge_break(conn, break_id, actor=actor, note=body.reason)
        assert done  # locked, open and unacknowledged above
        await _audit_break(conn, actor, "BREAK_ACKNOWLEDGED", row, body.reason)
        acknowledged = await breaks.break_by_id(conn, break_id)
    assert acknowledged is not None
    return _json(BreakPublic.of(acknowledged))


async def _open_break(conn: Conn, request: Request, principal: Principal, break_id: int) -> BreakRow:
    """The break, locked, if it is inside the caller's scope (else 404, as an unknown one) and open (else 409)."""
    row = await breaks.break_by_id(conn, break_id, lock=True)
    visible = row is not None and all(
        allowed
        for allowed in (
            principal.scope.allows_client(row["client_id"]),
            principal.scope.allows_account(row["account"]),
            principal.scope.allows_broker(row["broker"]),
        )
    )
    if row is None or not visible:
        if row is not None:
            await hidden(request, principal, f"break {break_id}")
        raise HTTPException(404, detail=f"no break {break_id}")
    if row["resolved_at"] is not None:
        raise _conflict(f"break {break_id}", row["resolved_by"], row["resolved_at"], row["resolution"])
    return row


async def _audit_break(conn: Conn, actor: str, action: str, row: BreakRow, reason: str) -> None:
    """The audit entry of a break's acknowledgement or resolution (same transaction as the change)."""
    await append_audit(
        conn,
        actor=actor,
        action=action,
        subject=f"break:{row['id']}",
        detail={
            "reason": reason,
            "orderId": row["order_id"],
            "broker": row["broker"],
            "kind": row["kind"],
            "detail": row["detail"],
        },
    )


async def _firm_wide(request: Request, principal: Principal) -> None:
    if not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field=None,
            message="unmatched reports belong to no order, so they are firm-wide; they need a principal whose scope "
            "is every client and account",
        )


@router.get("/unmatched-reports", response_model=UnmatchedListPublic, responses={422: {"model": ErrorBody}})
async def list_unmatched(
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_READ)],
    status: UnmatchedStatusQuery = "open",
    broker: Identifier | None = None,
    before: Before = None,
    limit: Limit = 100,
) -> JSONResponse:
    """Reports that reached no order workflow (of the brokers in scope), newest first: open ones by default."""
    await _firm_wide(request, principal)
    async with pool.connection() as conn:
        rows = await breaks.list_unmatched(
            conn, scope=principal.scope, status=status, broker=broker, before=before, limit=limit
        )
    data = [UnmatchedPublic.of(r) for r in rows]
    return _json(UnmatchedListPublic(data=data, count=len(data), next_before=_next_before(data, limit)))


@router.post(
    "/unmatched-reports/{report_id}/resolve",
    response_model=UnmatchedPublic,
    responses=_CHANGE_ANSWERS,
)
async def resolve_unmatched(
    body: ResolveBody,
    pool: PoolDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_RESOLVE)],
    report_id: Annotated[int, Path(ge=1, le=_MAX_ID)],
) -> JSONResponse:
    """Mark an unmatched report resolved with a reason (audited)."""
    await _firm_wide(request, principal)
    async with pool.connection() as conn, conn.transaction():
        row = await breaks.unmatched_by_id(conn, report_id, lock=True)
        if row is None or not principal.scope.allows_broker(row["broker"]):
            if row is not None:
                await hidden(request, principal, f"unmatched report {report_id}")
            raise HTTPException(404, detail=f"no unmatched report {report_id}")
        if row["resolved_at"] is not None:
            raise _conflict(f"unmatched report {report_id}", row["resolved_by"], row["resolved_at"], row["resolution"])
        resolved = await breaks.resolve_unmatched(conn, report_id, actor=actor, resolution=body.reason)
        assert resolved is not None  # locked and open above
        await append_audit(
            conn,
            actor=actor,
            action="UNMATCHED_REPORT_RESOLVED",
            subject=f"unmatched:{report_id}",
            detail={
                "reason": body.reason,
                "broker": row["broker"],
                "execId": row["exec_id"],
                "clientOrderId": row["client_order_id"],
            },
        )
    return _json(UnmatchedPublic.of(resolved))
