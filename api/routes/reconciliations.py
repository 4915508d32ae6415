"""End-of-day reconciliation runs: start one on demand (idempotent per broker and day), read the reports.

A run covers every account of its broker, so these routes are firm-wide (a scope of every client and account,
with the broker in it). ``POST /reconciliations`` (``breaks:resolve``: operator, risk) starts the run of a broker
and day under the workflow id ``reconcile-<broker>-<date>``; asking again for the same broker and day answers the
same run (200), never a second one. It is audited (``RECONCILIATION_REQUESTED``) before the run is started.
``GET /reconciliations`` lists reports, ``GET /reconciliations/{id}`` gives one (JSON, or CSV with
``format=csv``); scheduled runs have ids ``reconcile-<broker>-scheduled-<time>``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import forbid, requires
from api.deps import ActorDep, PoolDep, SettingsDep, TemporalDep
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Identifier, Reason
from brokers import BROKERS
from core.auth import Permission, Principal
from core.reconciliation import workflow_id_for_day
from store.audit import append_audit
from store.reconciliation import RunRow, list_runs, run_of
from workflows.reconciliation import ReconciliationInput, ReconciliationWorkflow

__all__ = ["router"]

router = APIRouter(tags=["reconciliations"], route_class=EdgeRoute)

#: A workflow id as these routes make them (``reconcile-<broker>-<date>`` or a scheduled run's).
RunId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^reconcile-[A-Za-z0-9._:@\-]+$")]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ReconciliationRequest(_Wire):
    """Which broker, and which UTC day (default: today)."""

    broker: Identifier
    date: dt.date | None = None


class RunSummary(_Wire):
    """A run: its id, broker, day, what was compared and what it found per kind."""

    id: str
    run_id: str
    broker: str
    date: dt.date
    started_at: datetime
    finished_at: datetime
    compared: list[str]
    counts: dict[str, int]
    new_breaks: int

    @classmethod
    def of(cls, row: RunRow) -> RunSummary:
        """From the stored row."""
        return cls(
            id=row["workflow_id"],
            run_id=row["run_id"],
            broker=row["broker"],
            date=row["day"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            compared=row["compared"],
            counts=row["counts"],
            new_breaks=row["new_breaks"],
        )


class RunReport(RunSummary):
    """A run's report: every difference (kind, ref, order, account, symbol, detail, its break and whether new)."""

    differences: list[dict[str, Any]]


class RunsPublic(_Wire):
    """Runs, newest first."""

    data: list[RunSummary]
    count: int


class StartedPublic(_Wire):
    """The run of a broker and day: started now (202) or already (200); its report when it has finished."""

    id: str
    broker: str
    date: dt.date
    status: str
    report: RunReport | None = None


def _json(body: BaseModel, status: int = 200) -> JSONResponse:
    return JSONResponse(status_code=status, content=body.model_dump(mode="json", by_alias=True))


def _invalid(field: str, message: str) -> JSONResponse:
    body = ErrorBody(
        status="rejected", message=message, reasons=[Reason(code="INVALID_FIELD", field=field, message=message)]
    )
    return JSONResponse(status_code=422, content=body.model_dump(mode="json", exclude_none=True))


async def _firm_wide(request: Request, principal: Principal, broker: str | None) -> None:
    if not principal.scope.firm_wide:
        await forbid(
            request,
            principal,
            code="OUT_OF_SCOPE",
            field=None,
            message="a reconciliation covers every account of its broker, so it needs a principal whose scope is "
            "every client and account",
        )
    if broker is not None and not principal.scope.allows_broker(broker):
        await forbid(
            request, principal, code="OUT_OF_SCOPE", field="broker", message=f"broker {broker} is outside the scope"
        )


def _report(row: RunRow) -> RunReport:
    return RunReport(**RunSummary.of(row).model_dump(), differences=row["differences"])


@router.post(
    "/reconciliations",
    response_model=StartedPublic,
    status_code=202,
    responses={200: {"model": StartedPublic}, 403: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def start_reconciliation(
    body: ReconciliationRequest,
    pool: PoolDep,
    temporal: TemporalDep,
    settings: SettingsDep,
    actor: ActorDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_RESOLVE)],
) -> JSONResponse:
    """Reconcile a broker for a UTC day now (202), or answer the run of that broker and day already made (200)."""
    await _firm_wide(request, principal, body.broker)
    if body.broker not in BROKERS:
        return _invalid("broker", f"unknown broker {body.broker!r}; known: {', '.join(sorted(BROKERS))}")
    today = datetime.now(UTC).date()
    day = body.date or today
    oldest = today - timedelta(days=settings.reconciliation.max_age_days)
    if day > today:
        return _invalid("date", f"date {day.isoformat()} is in the future (today is {today.isoformat()} UTC)")
    if day < oldest:
        return _invalid("date", f"date {day.isoformat()} is before {oldest.isoformat()} (reconciliation.max_age_days)")
    wid = workflow_id_for_day(body.broker, day)
    async with pool.connection() as conn, conn.transaction():
        await append_audit(
            conn,
            actor=actor,
            action="RECONCILIATION_REQUESTED",
            subject=f"reconciliation:{wid}",
            detail={"broker": body.broker, "date": day.isoformat()},
        )
    status = 202
    try:
        await temporal.start_workflow(
            ReconciliationWorkflow.run,
            ReconciliationInput(
                broker=body.broker, broker_task_queue=settings.temporal.broker_task_queue(body.broker), day=day
            ),
            id=wid,
            task_queue=settings.temporal.task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        state = "RUNNING"
    except WorkflowAlreadyStartedError:
        status = 200
        desc = await temporal.get_workflow_handle(wid).describe()
        state = desc.status.name if desc.status is not None else "UNKNOWN"
    except RPCError as e:  # Temporal unreachable: nothing started; asking again is safe (one run per broker and day)
        error = ErrorBody(status="error", message=f"the reconciliation could not be started, try again: {e.message}")
        return JSONResponse(status_code=503, content=error.model_dump(mode="json", exclude_none=True))
    async with pool.connection() as conn:
        row = await run_of(conn, wid)
    report = _report(row) if row is not None else None
    return _json(StartedPublic(id=wid, broker=body.broker, date=day, status=state, report=report), status)


@router.get("/reconciliations", response_model=RunsPublic, responses={422: {"model": ErrorBody}})
async def runs(
    pool: PoolDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_READ)],
    broker: Identifier | None = None,
    day: Annotated[date | None, Query(alias="date")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """Reconciliation runs of the brokers in scope, newest first (of one broker and/or UTC day)."""
    await _firm_wide(request, principal, broker)
    async with pool.connection() as conn:
        rows = await list_runs(conn, scope=principal.scope, broker=broker, day=day, limit=limit)
    data = [RunSummary.of(r) for r in rows]
    return _json(RunsPublic(data=data, count=len(data)))


def _cell(value: Any) -> str:
    """A CSV cell; text a spreadsheet would take for a formula is quoted with a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


_CSV_COLUMNS = ("kind", "ref", "orderId", "account", "symbol", "breakId", "new", "detail")


@router.get(
    "/reconciliations/{run}",
    response_model=RunReport,
    responses={202: {"model": StartedPublic}, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def report(
    run: RunId,
    pool: PoolDep,
    temporal: TemporalDep,
    request: Request,
    principal: Annotated[Principal, requires(Permission.BREAKS_READ)],
    fmt: Annotated[Literal["json", "csv"], Query(alias="format")] = "json",
) -> Response:
    """A run's report (its latest run under that id): JSON, or CSV with one difference per line.

    202 while the run has not finished (its Temporal status), 404 for an unknown id.
    """
    await _firm_wide(request, principal, None)
    # reconcile-<broker>-<date> or reconcile-<broker>-scheduled-<time>: broker names have no dash
    broker = run.removeprefix("reconcile-").split("-", 1)[0]
    if not principal.scope.allows_broker(broker):
        raise HTTPException(404, detail=f"no reconciliation {run}")
    async with pool.connection() as conn:
        row = await run_of(conn, run)
    if row is None:
        try:
            desc = await temporal.get_workflow_handle(run).describe()
        except RPCError as e:
            if e.status != RPCStatusCode.NOT_FOUND:
                raise
            raise HTTPException(404, detail=f"no reconciliation {run}") from None
        if desc.workflow_type != "ReconciliationWorkflow":
            raise HTTPException(404, detail=f"no reconciliation {run}")
        state = desc.status.name if desc.status is not None else "UNKNOWN"
        code = 202 if desc.status is WorkflowExecutionStatus.RUNNING else 200
        return JSONResponse(status_code=code, content={"id": run, "broker": broker, "status": state, "report": None})
    rep = _report(row)
    if fmt == "json":
        return _json(rep)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_COLUMNS)
    for d in rep.differences:
        writer.writerow([_cell(d.get(c)) for c in _CSV_COLUMNS])
    name = f"{run}.csv"
    return Response(
        out.getvalue(), media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )
