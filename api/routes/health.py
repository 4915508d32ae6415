"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from api.auth import operational, public
from api.deps import PoolDep, SettingsDep, TemporalDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


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
async def ready(settings: SettingsDep, temporal: TemporalDep, pool: PoolDep) -> JSONResponse:
    """Readiness: Temporal, Postgres and a worker polling the order task queue are all reachable."""

    async def postgres() -> str:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
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

    pg, tmp, wrk = await asyncio.gather(_check(postgres()), _check(temporal_server()), _check(worker()))
    checks = {"postgres": pg, "temporal": tmp, "worker": wrk}
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        status_code=200 if ok else 503, content={"status": "ready" if ok else "not_ready", "checks": checks}
    )
