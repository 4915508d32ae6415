"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.auth import operational, public
from api.deps import PoolDep, SettingsDep, TemporalDep
from api.edge import EdgeRoute
from core.db import ping
from store.quotes import newest_by_source

__all__ = ["router"]

router = APIRouter(tags=["health"], route_class=EdgeRoute)


@router.get("/health", dependencies=[public("liveness probe; says nothing but ok")])
async def health() -> dict[str, str]:
    """Liveness: the API process answers."""
    return {"status": "ok"}


async def _check(coro: Any) -> str:
    try:
        async with asyncio.timeout(3):
            return await coro  # type: ignore[no-any-return]
    except Exception as e:  # readiness reports every failure as text, never raises
        return f"down: {type(e).__name__}: {e}"[:300]


@router.get("/ready", dependencies=[operational("ready")])
async def ready(settings: SettingsDep, temporal: TemporalDep, pool: PoolDep, request: Request) -> JSONResponse:
    """Readiness: Temporal, Postgres and a worker polling the order task queue are all reachable.

    ``notes`` names market data sources that have gone silent: orders they price are refused, but the
    stack itself is up, so they do not make it unready.
    """

    async def postgres() -> str:
        async with pool.connection() as conn:
            await ping(conn)
        return "ok"

    async def temporal_server() -> str:
        await temporal.service_client.check_health()
        return "ok"

    async def worker() -> str:
        resp = await temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal.namespace,
                task_queue=TaskQueue(name=settings.temporal.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        return "ok" if resp.pollers else f"down: no worker polls {settings.temporal.task_queue}"

    async def market_data() -> list[str]:
        market = request.app.state.market
        async with pool.connection() as conn:
            silent = market.silent_sources(await newest_by_source(conn))
        limit = market.settings.max_age_seconds
        return [
            f"market data source {source!r} "
            + ("has never published a quote" if age is None else f"is silent: its newest quote is {age:.0f}s old")
            + f" (stale after {limit:g}s): orders it prices are refused"
            for source, age in silent.items()
        ]

    pg, tmp, wrk = await asyncio.gather(_check(postgres()), _check(temporal_server()), _check(worker()))
    checks = {"postgres": pg, "temporal": tmp, "worker": wrk}
    ok = all(v == "ok" for v in checks.values())
    notes: list[str] = []
    if pg == "ok":
        try:
            async with asyncio.timeout(3):
                notes = await market_data()
        except Exception as e:  # a note about notes; readiness never raises
            notes = [f"market data not checked: {type(e).__name__}: {e}"[:300]]
    content: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks}
    if notes:
        content["notes"] = notes
    return JSONResponse(status_code=200 if ok else 503, content=content)
