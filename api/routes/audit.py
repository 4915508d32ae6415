"""The audit log, read-only: every risk decision, operator action, policy, key and account change, refusal.

Also the trail's check (``GET /audit/verify``: the chain and the checkpoints, as ``python -m core.audit verify``)
and the archive's export by period (``GET /audit/export``, streamed CSV or JSON lines). All firm-wide: they need
a principal whose scope is every client and account (role auditor).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from api.auth import forbid, requires
from api.deps import PoolDep, SettingsDep
from api.edge import EdgeRoute
from core.audit import read_checkpoints, verify_trail
from core.audit_cli import checkpoint_path
from core.auth import Permission, Principal
from core.export import ExportFormat, export_lines, parse_instant
from store.audit import entries
from store.export import ExportKind

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
    await _firm_wide(request, principal)
    async with pool.connection() as conn:
        rows = await entries(conn, action=action, actor=actor, subject=subject, before_id=before_id, limit=limit)
    data = [{**r, "at": r["at"].isoformat()} for r in rows]
    return JSONResponse(content={"data": data, "count": len(data)})


async def _firm_wide(request: Request, principal: Principal) -> None:
    if not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field=None,
            message="the audit log is firm-wide; it needs a principal whose scope is every client and account",
        )


@router.get("/verify")
async def verify(
    pool: PoolDep,
    settings: SettingsDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.AUDIT_READ)],
) -> JSONResponse:
    """Recompute the chain and check it against the checkpoints kept outside the database.

    200 with ``ok: true`` when everything holds; 409 with ``ok: false`` and the problems found otherwise.
    """
    await _firm_wide(request, principal)
    key = settings.audit.checkpoint_key
    try:
        checkpoints = read_checkpoints(checkpoint_path(settings))
    except ValueError as e:
        return JSONResponse(status_code=409, content={"ok": False, "problems": [str(e)], "warnings": []})
    async with pool.connection() as conn:
        report = await verify_trail(conn, checkpoints, key.get_secret_value() if key else None)
    return JSONResponse(status_code=200 if report.ok else 409, content=report.as_dict())


@router.get("/export", response_class=StreamingResponse, response_model=None)
async def export(
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.AUDIT_READ)],
    start: Annotated[str, Query(alias="from", max_length=40, description="ISO 8601 date or time, inclusive")],
    end: Annotated[str, Query(alias="to", max_length=40, description="ISO 8601 date or time, exclusive")],
    kind: ExportKind = "audit",
    fmt: Annotated[ExportFormat, Query(alias="format")] = "csv",
) -> Response:
    """Orders, fills, risk decisions, operator actions or audit rows of ``[from, to)``, streamed.

    ``format=csv`` (a header row) or ``jsonl`` (one object per line, ``record`` naming the kind).
    """
    await _firm_wide(request, principal)
    try:
        since, until = parse_instant(start, "from"), parse_instant(end, "to")
    except ValueError as e:
        field = str(e).split(":", 1)[0]
        return _invalid(field, str(e))
    if until <= since:
        return _invalid("to", "to: must be after from")
    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    name = f"exodus-{kind}-{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}.{fmt}"
    lines = export_lines(pool.connection, kind, fmt, start=since, end=until)
    return StreamingResponse(lines, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _invalid(field: str, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=422,
        content={
            "status": "rejected",
            "message": message,
            "reasons": [{"code": "INVALID_FIELD", "field": field, "message": message}],
        },
    )
