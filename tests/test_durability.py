"""Kill the worker process while orders are in flight, start another: every order completes exactly once.

The worker runs as a real ``python -m worker`` subprocess (its paper venue journals to Postgres). It is
killed with SIGKILL while orders are being filled; more orders arrive while no worker runs (the API
answers 202 "pending": the order is durable but undecided); then a new worker process takes over.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from core.domain import workflow_id_for
from core.settings import ApiSettings
from tests.harness import unique
from tests.workerkit import (
    assert_ledger_is_the_venues,
    kill_worker,
    paper_venue_orders,
    start_worker,
    stop_worker,
    wait_ready,
    worker_stack,
)
from workflows.order import OrderWorkflow

pytestmark = pytest.mark.asyncio


async def test_worker_killed_mid_flight_loses_and_duplicates_nothing(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    async with worker_stack(temporal_env, postgres_admin_url, "exodus_durability") as w:
        settings, env, stack = w.settings, w.env, w.stack
        account = unique("dur")

        def body(i: int) -> dict[str, object]:
            # Market orders larger than the displayed size (500) fill over several feed steps.
            return {
                "clientId": account,
                "clientOrderId": f"o{i}",
                "symbol": "AAPL" if i % 2 else "MSFT",
                "side": "BUY" if i % 3 else "SELL",
                "qty": 1200 + 100 * i,
                "timeInForce": "GTC",
            }

        impatient = settings.model_copy(update={"api": ApiSettings(decision_timeout_seconds=1.0)})
        worker = start_worker(env, log)
        try:
            async with stack.api() as http, stack.api(impatient) as impatient_http:
                await wait_ready(http)  # the worker is up when an order gets its decision
                first = await asyncio.gather(*(http.post("/api/v1/orders", json=body(i)) for i in range(12)))
                assert [r.status_code for r in first] == [201] * 12, [r.text for r in first]
                await asyncio.sleep(0.15)
                kill_worker(worker)
                # No worker: the API cannot get a decision in time, but the order is durable (202 pending).
                pending = await asyncio.gather(
                    *(impatient_http.post("/api/v1/orders", json=body(i)) for i in range(12, 15))
                )
                assert [r.status_code for r in pending] == [202] * 3, [r.text for r in pending]
                assert all(r.json()["status"] == "pending" for r in pending)
                worker = start_worker(env, log)
                ids = [r.json()["internalOrderId"] for r in first + pending]
                results = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            temporal_env.client.get_workflow_handle_for(OrderWorkflow.run, workflow_id_for(i)).result()
                            for i in ids
                        )
                    ),
                    timeout=90,
                )
                # A retry of a pending request now gets the decision.
                again = await http.post("/api/v1/orders", json=body(12))
                assert again.status_code == 200 and again.json()["status"] == "accepted", again.text
        finally:
            stop_worker(worker)
        assert [r.status.value for r in results] == ["FILLED"] * 15, (results, log.read_text()[-3000:])
        assert all(r.breaks == [] for r in results)

        # The venue saw each order exactly once, and was never sent a second copy.
        venue = await paper_venue_orders(stack)
        assert sorted(o["client_order_id"] for o in venue) == sorted(ids)

        # The ledger holds exactly the venue's fills: same executions, quantities and prices.
        ledger = await stack.fetch(
            "SELECT exec_id, qty, price, order_id, side, symbol FROM fills WHERE account = %s", account
        )
        assert_ledger_is_the_venues(venue, ledger)

        # Orders' filled quantities and the positions agree with the fills.
        for result, order_id in zip(results, ids, strict=True):
            assert Decimal(result.filled_qty) == sum(f["qty"] for f in ledger if f["order_id"] == order_id)
        expected: dict[str, Decimal] = defaultdict(Decimal)
        for f in ledger:
            expected[f["symbol"]] += f["qty"] if f["side"] == "BUY" else -f["qty"]
        positions = await stack.fetch("SELECT symbol, qty FROM positions WHERE account = %s", account)
        assert {p["symbol"]: p["qty"] for p in positions} == dict(expected)
        rows = await stack.fetch("SELECT status, count(*) AS n FROM orders WHERE account = %s GROUP BY status", account)
        assert rows == [{"status": "FILLED", "n": 15}]
