"""Two ``python -m worker`` processes serve one order queue; the paper session has exactly one owner.

Worker A owns ``paper``; worker B lists ``paper`` too but as a standby (``EXODUS_WORKER__STANDBY=true``), so it
serves only the order queue until A stops. Orders flow through both (their histories' workflow tasks name
both processes). Killing B leaves A carrying on; killing A hands the paper session to B, which finishes the
orders in flight (the venue's book is journaled in Postgres) and takes new ones. The venue never sees an
order twice, and the ledger holds exactly its fills.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from core.domain import workflow_id_for
from tests.harness import unique
from tests.workerkit import (
    assert_ledger_is_the_venues,
    kill_worker,
    paper_venue_orders,
    start_worker,
    stop_worker,
    wait_for_log,
    worker_stack,
)
from workflows.order import OrderResult, OrderWorkflow

pytestmark = pytest.mark.asyncio


async def test_two_workers_share_the_order_queue_and_hand_the_paper_session_over(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, tmp_path: Path
) -> None:
    async with worker_stack(
        temporal_env,
        postgres_admin_url,
        "exodus_scale",
        EXODUS_WORKER__BROKERS='["paper"]',
        EXODUS_WORKER__CLAIM_CHECK_SECONDS="0.5",
    ) as w:
        env, stack = w.env, w.stack
        standby_env = {**env, "EXODUS_WORKER__STANDBY": "true"}
        log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
        account = unique("scale")
        numbers = iter(range(1000))

        def body(i: int) -> dict[str, object]:
            # Market orders larger than the displayed size (500) fill over several feed steps. Each quantity is the
            # order's own: two orders of the same client, symbol, side and quantity within a second are refused as
            # DUPLICATE_ORDER (o16 repeated o2 when the first batch filled within a second of its sending).
            return {
                "clientId": account,
                "clientOrderId": f"o{i}",
                "symbol": "AAPL" if i % 2 else "MSFT",
                "side": "BUY" if i % 3 else "SELL",
                "qty": 1200 + 100 * (i % 7) + i,
                "timeInForce": "GTC",
            }

        async def submit(http: httpx.AsyncClient, n: int) -> list[str]:
            answers = await asyncio.gather(*(http.post("/api/v1/orders", json=body(next(numbers))) for _ in range(n)))
            refused = [(r.status_code, r.json().get("clientOrderId"), r.json().get("reasons")) for r in answers]
            assert [r.status_code for r in answers] == [201] * n, [x for x in refused if x[0] != 201]
            return [str(r.json()["internalOrderId"]) for r in answers]

        async def results(ids: Sequence[str]) -> list[OrderResult]:
            handles = [temporal_env.client.get_workflow_handle_for(OrderWorkflow.run, workflow_id_for(i)) for i in ids]
            return list(await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=120))

        async def task_workers(ids: Sequence[str]) -> set[str]:
            # The identity of the worker that completed each workflow task (pid in the identity).
            seen: set[str] = set()
            for i in ids:
                history = await temporal_env.client.get_workflow_handle(workflow_id_for(i)).fetch_history()
                for event in history.events:
                    if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                        seen.add(event.workflow_task_completed_event_attributes.identity)
            return seen

        a = start_worker(env, log_a)
        b: subprocess.Popen[bytes] | None = None
        ids: list[str] = []
        all_results: list[OrderResult] = []
        try:
            async with stack.api() as http:
                await wait_for_log(log_a, "broker paper started", a)
                b = start_worker(standby_env, log_b)
                await wait_for_log(log_b, "standing by to take it over", b)
                await wait_for_log(log_b, "worker polling", b)

                # Both serve the order queue; only A polls paper's queue.
                batch = await submit(http, 16)
                ids += batch
                all_results += await results(batch)
                identities = await task_workers(batch)
                for proc in (a, b):
                    assert any(x.startswith(f"exodus-worker-{proc.pid}@") for x in identities), (proc.pid, identities)
                assert "takes its session over" not in log_b.read_text()
                # Only the session's owner sweeps it (worker/sweep.py).
                await wait_for_log(log_a, "broker paper: swept every", a)
                assert "swept every" not in log_b.read_text()

                # Kill B (not an owner) mid-flight: A carries on alone.
                batch = await submit(http, 8)
                await asyncio.sleep(0.15)
                kill_worker(b)
                batch += await submit(http, 4)
                ids += batch
                all_results += await results(batch)

                # B back as a standby; kill A (the paper owner) mid-flight: B takes the paper session over.
                log_b = tmp_path / "worker-b2.log"
                b = start_worker(standby_env, log_b)
                await wait_for_log(log_b, "worker polling", b)
                batch = await submit(http, 8)
                await asyncio.sleep(0.15)
                kill_worker(a)
                await wait_for_log(log_b, "broker paper started; polling", b)
                await wait_for_log(log_b, "broker paper: swept every", b)  # the new owner sweeps it
                batch += await submit(http, 4)
                ids += batch
                all_results += await results(batch)
        finally:
            for proc in (a, b):
                if proc is not None:
                    stop_worker(proc)
        logs = f"A:\n{log_a.read_text()[-2000:]}\nB:\n{log_b.read_text()[-2000:]}"
        assert [r.status.value for r in all_results] == ["FILLED"] * len(ids), (all_results, logs)
        assert all(r.breaks == [] for r in all_results), logs

        # The venue saw each order exactly once, and was never sent a second copy.
        venue = await paper_venue_orders(stack)
        assert sorted(o["client_order_id"] for o in venue) == sorted(ids)

        # The ledger holds exactly the venue's fills; each order's filled quantity agrees with them.
        ledger: list[dict[str, Any]] = await stack.fetch(
            "SELECT exec_id, qty, price, order_id FROM fills WHERE account = %s", account
        )
        assert_ledger_is_the_venues(venue, ledger)
        for result, order_id in zip(all_results, ids, strict=True):
            assert Decimal(result.filled_qty) == sum(f["qty"] for f in ledger if f["order_id"] == order_id)
