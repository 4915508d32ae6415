"""End-of-day reconciliation against the paper venue, end to end on Temporal and Postgres (issue 17).

Each test has its own database and venue journal: a reconciliation compares everything of its broker, so the
session's shared stack (many tests' orders, several venue journals) would not reconcile by design.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from core.db import app_role_configure
from core.domain import OrderSide, OrderType, SubmitOrder, TimeInForce, workflow_id_for
from core.instruments import InstrumentCatalog
from core.reconciliation import ReconciliationKind
from core.settings import ReconciliationSettings
from store.reconciliation import ledger_view
from tests.conftest import create_database, make_settings, temporal_address
from tests.harness import Stack, paper_broker, unique
from worker.schedules import ensure_reconciliation_schedules, schedule_id
from workflows.reconciliation import ReconciliationInput, ReconciliationWorkflow

K = ReconciliationKind


@pytest.fixture
async def own(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, instruments: InstrumentCatalog
) -> AsyncIterator[tuple[Stack, str]]:
    url = await create_database(postgres_admin_url)
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=10,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=app_role_configure("exodus_app"),
        open=False,
    )
    await pool.open(wait=True)
    settings = make_settings(
        url, temporal_address(temporal_env), reconciliation=ReconciliationSettings(grace_seconds=0)
    )
    brokers = {"paper": paper_broker(instruments, pool, url, journal_key="paper")}
    try:
        async with Stack.running(temporal_env.client, settings, pool, instruments, dict(brokers)) as stack:
            yield stack, url
    finally:
        await pool.close()


async def _owner(url: str, sql: str, *params: Any) -> None:
    """As the database's owner (the test's own injections)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql, params)  # type: ignore[arg-type]


async def _filled(http: httpx.AsyncClient, stack: Stack, account: str, qty: int) -> str:
    r = await http.post(
        "/api/v1/orders",
        json={"clientId": account, "clientOrderId": unique("co"), "symbol": "AAPL", "side": "BUY", "qty": qty},
    )
    assert r.status_code in (200, 201), r.text
    order_id: str = r.json()["internalOrderId"]
    async with asyncio.timeout(20):
        while not await stack.fetch(
            "SELECT 1 FROM orders o JOIN fills f USING (order_id) WHERE o.order_id = %s AND o.status = 'FILLED'",
            order_id,
        ):
            await asyncio.sleep(0.05)
    # Its workflow has finished (its last booking done), so what a test changes in Postgres stays changed.
    await stack.client.get_workflow_handle(workflow_id_for(order_id)).result()
    return order_id


async def _report(http: httpx.AsyncClient, run: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            r = await http.get(f"/api/v1/reconciliations/{run}")
            assert r.status_code in (200, 202), r.text
            if r.json().get("differences") is not None:
                return r.json()  # type: ignore[no-any-return]
            await asyncio.sleep(0.1)


async def test_injected_differences_each_become_one_break_of_their_kind_and_a_second_run_changes_nothing(
    own: tuple[Stack, str],
) -> None:
    stack, url = own
    accounts = {k: unique(k.value[:5].lower()) for k in K}
    async with stack.api() as http:
        # What reconciles: a filled order and a resting one, in an account of their own.
        clean = unique("clean")
        await _filled(http, stack, clean, 3)
        r = await http.post(
            "/api/v1/orders",
            json={
                "clientId": clean,
                "clientOrderId": unique("co"),
                "symbol": "AAPL",
                "side": "BUY",
                "qty": 1,
                "type": "LIMIT",
                "price": "120",
                "timeInForce": "GTC",
            },
        )
        assert r.status_code in (200, 201), r.text
        resting = r.json()["internalOrderId"]
        async with asyncio.timeout(20):
            while not await stack.fetch("SELECT 1 FROM orders WHERE order_id = %s AND status = 'ACCEPTED'", resting):
                await asyncio.sleep(0.05)

        # A fill the ledger lacks: booked, then taken out of the ledger.
        missing = await _filled(http, stack, accounts[K.FILL_MISSING_IN_LEDGER], 2)
        [lost] = await stack.fetch("SELECT exec_id FROM fills WHERE order_id = %s", missing)
        await _owner(url, "DELETE FROM fills WHERE exec_id = %s", lost["exec_id"])
        # Position drift: the ledger has a fill of two days ago the venue never made (not a fill of today).
        drifting = await _filled(http, stack, accounts[K.POSITION_DRIFT], 4)
        await _owner(
            url,
            "INSERT INTO fills (broker, exec_id, order_id, account, symbol, side, qty, price, filled_at)"
            " VALUES ('paper', 'old-fill', %s, %s, 'AAPL', 'BUY', 5, 190, now() - interval '2 days')",
            drifting,
            accounts[K.POSITION_DRIFT],
        )
        # A fill unknown to the broker: booked today in the ledger only.
        ghost = await _filled(http, stack, accounts[K.FILL_UNKNOWN_TO_BROKER], 1)
        await _owner(
            url,
            "INSERT INTO fills (broker, exec_id, order_id, account, symbol, side, qty, price, filled_at)"
            " VALUES ('paper', 'ghost-fill', %s, %s, 'AAPL', 'BUY', 1, 190, now() - interval '1 minute')",
            ghost,
            accounts[K.FILL_UNKNOWN_TO_BROKER],
        )
        # An order open here but not there: the read model says ACCEPTED for an order the venue filled.
        stale = await _filled(http, stack, accounts[K.ORDER_NOT_AT_BROKER], 1)
        await _owner(url, "UPDATE orders SET status = 'ACCEPTED' WHERE order_id = %s", stale)
        # An orphan at the venue: an order sent to it behind Exodus' back.
        orphan = "EXORPHAN" + uuid.uuid4().hex[:10].upper()
        ack = await stack.venue.submit(
            SubmitOrder(
                cl_ord_id=orphan,
                account=accounts[K.ORPHAN_ORDER_AT_BROKER],
                symbol="AAPL",
                side=OrderSide.BUY,
                type=OrderType.LIMIT,
                time_in_force=TimeInForce.GTC,
                qty=Decimal(1),
                price=Decimal(100),
            )
        )
        assert ack.accepted

        r = await http.post("/api/v1/reconciliations", json={"broker": "paper"})
        assert r.status_code == 202, r.text
        run = r.json()["id"]
        today = datetime.now(UTC).date()
        assert run == f"reconcile-paper-{today.isoformat()}"
        report = await _report(http, run)
        assert report["compared"] == ["positions", "fills", "orders"]
        assert report["counts"] == {k.value: 1 for k in K}, report["differences"]
        assert report["newBreaks"] == 5
        by_kind = {d["kind"]: d for d in report["differences"]}
        assert by_kind[K.FILL_MISSING_IN_LEDGER]["ref"] == lost["exec_id"]
        assert by_kind[K.FILL_MISSING_IN_LEDGER]["orderId"] == missing
        assert by_kind[K.POSITION_DRIFT]["ref"] == f"{accounts[K.POSITION_DRIFT]}/AAPL"
        assert "the broker holds 4, the ledger 9" in by_kind[K.POSITION_DRIFT]["detail"]
        assert by_kind[K.FILL_UNKNOWN_TO_BROKER]["ref"] == "ghost-fill"
        assert by_kind[K.ORDER_NOT_AT_BROKER]["orderId"] == stale
        assert by_kind[K.ORPHAN_ORDER_AT_BROKER]["ref"] == orphan

        r = await http.get("/api/v1/breaks", params={"status": "all", "broker": "paper"})
        breaks = r.json()["data"]
        assert sorted(b["kind"] for b in breaks) == sorted(k.value for k in K)
        assert {b["id"] for b in breaks} == {d["breakId"] for d in report["differences"]}

        # The same broker and day again: the same run, not a second one.
        again = await http.post("/api/v1/reconciliations", json={"broker": "paper", "date": today.isoformat()})
        assert again.status_code == 200, again.text
        assert again.json()["id"] == run and again.json()["status"] == "COMPLETED"
        assert again.json()["report"]["runId"] == report["runId"]

        # Another run of the day (as the schedule would start): same differences, no new break.
        result = await stack.client.execute_workflow(
            ReconciliationWorkflow.run,
            ReconciliationInput(broker="paper", broker_task_queue=stack.settings.temporal.broker_task_queue("paper")),
            id=f"reconcile-paper-scheduled-{uuid.uuid4().hex[:8]}",
            task_queue=stack.settings.temporal.task_queue,
        )
        assert result.counts == report["counts"] and result.new_breaks == 0
        r = await http.get("/api/v1/breaks", params={"status": "all", "broker": "paper"})
        assert sorted(b["id"] for b in r.json()["data"]) == sorted(b["id"] for b in breaks)
        listed = await http.get("/api/v1/reconciliations", params={"broker": "paper", "date": today.isoformat()})
        assert listed.json()["count"] == 2

        # The report as CSV: a header and one line per difference.
        csv = await http.get(f"/api/v1/reconciliations/{run}", params={"format": "csv"})
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        lines = csv.text.strip().splitlines()
        assert lines[0] == "kind,ref,orderId,account,symbol,breakId,new,detail" and len(lines) == 6

        # Lifecycle: open -> acknowledged -> resolved, each audited.
        drift = next(b for b in breaks if b["kind"] == K.POSITION_DRIFT)
        r = await http.post(
            f"/api/v1/breaks/{drift['id']}/acknowledge", json={"reason": "looking"}, headers={"X-Actor": "ops-1"}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["acknowledgedBy"], r.json()["acknowledgement"]) == ("ops-1", "looking")
        assert r.json()["resolvedAt"] is None
        twice = await http.post(f"/api/v1/breaks/{drift['id']}/acknowledge", json={"reason": "again"})
        assert twice.status_code == 409 and "already acknowledged by ops-1" in twice.json()["message"]
        acked = await http.get("/api/v1/breaks", params={"status": "acknowledged"})
        assert [b["id"] for b in acked.json()["data"]] == [drift["id"]]
        unacked = await http.get("/api/v1/breaks", params={"status": "unacknowledged"})
        assert drift["id"] not in {b["id"] for b in unacked.json()["data"]} and unacked.json()["count"] == 4
        r = await http.post(f"/api/v1/breaks/{drift['id']}/resolve", json={"reason": "booked the correction"})
        assert r.status_code == 200 and r.json()["resolution"] == "booked the correction"
        late = await http.post(f"/api/v1/breaks/{drift['id']}/acknowledge", json={"reason": "late"})
        assert late.status_code == 409 and "already resolved" in late.json()["message"]
        for action in ("BREAK_ACKNOWLEDGED", "BREAK_RESOLVED"):
            audit = await http.get("/api/v1/audit", params={"action": action, "subject": f"break:{drift['id']}"})
            assert len(audit.json()["data"]) == 1, action
        audit = await http.get("/api/v1/audit", params={"action": "RECONCILIATION_REQUESTED"})
        assert {e["subject"] for e in audit.json()["data"]} == {f"reconciliation:{run}"}
        announced = await stack.fetch(
            "SELECT kind FROM stream_events WHERE kind LIKE 'BREAK%%' AND (data->>'id')::bigint = %s ORDER BY seq",
            drift["id"],
        )
        assert [a["kind"] for a in announced] == ["BREAK", "BREAK_ACKNOWLEDGED", "BREAK_RESOLVED"]


async def test_the_ledger_view_carries_the_registry_s_broker_accounts_of_its_broker(own: tuple[Stack, str]) -> None:
    _, url = own
    for account, broker, broker_account in (
        ("desk-a", "paper", "PB-1"),
        ("desk-b", "paper", "PB-1"),
        ("desk-c", "ib", "DU9"),
        ("desk-d", "paper", None),
        ("desk-e", None, "ANY-1"),
    ):
        await _owner(
            url,
            "INSERT INTO accounts (account, broker, broker_account, created_by) VALUES (%s, %s, %s, 'test')",
            account,
            broker,
            broker_account,
        )
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        view = await ledger_view(conn, broker="paper", day=datetime.now(UTC).date(), order_ids=[])
    assert view.broker_accounts == {"desk-a": "PB-1", "desk-b": "PB-1"}


async def test_bad_reconciliation_requests_are_refused_naming_the_field(own: tuple[Stack, str]) -> None:
    stack, _ = own
    async with stack.api() as http:
        cases = [
            ({"broker": "paper", "date": "9999-01-01"}, "date"),
            ({"broker": "paper", "date": "2001-01-01"}, "date"),
            ({"broker": "paper", "date": "yesterday"}, "date"),
            ({"broker": "nope"}, "broker"),
            ({"broker": "pa\x01per"}, "broker"),
            ({"broker": "paper", "extra": 1}, "extra"),
        ]
        for body, field in cases:
            r = await http.post("/api/v1/reconciliations", json=body)
            assert r.status_code == 422, (body, r.text)
            assert field in r.text, (body, r.text)
        r = await http.get("/api/v1/reconciliations/reconcile-paper-2001-01-01")
        assert r.status_code == 404
        r = await http.get("/api/v1/reconciliations/reconcile-not%01an-id")
        assert r.status_code in (404, 422)
        r = await http.get("/api/v1/reconciliations", params={"date": "9999-99-99"})
        assert r.status_code == 422 and "date" in r.text
    assert not await stack.fetch("SELECT 1 FROM reconciliation_runs")


async def test_temporal_unreachable_is_503_and_asking_again_starts_the_run(
    own: tuple[Stack, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, _ = own

    async def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    # Yesterday: the run ids are per broker and day, and the other tests share this Temporal server.
    body = {"broker": "paper", "date": (datetime.now(UTC).date() - timedelta(days=1)).isoformat()}
    async with stack.api() as http:
        with monkeypatch.context() as patch:
            patch.setattr(stack.client, "start_workflow", unreachable)
            r = await http.post("/api/v1/reconciliations", json=body)
        assert r.status_code == 503 and "try again" in r.json()["message"], r.text
        r = await http.post("/api/v1/reconciliations", json=body)
        assert r.status_code == 202, r.text
        report = await _report(http, r.json()["id"])
        assert report["counts"] == {k.value: 0 for k in K}


async def test_a_schedule_per_broker_is_created_updated_and_runs(own: tuple[Stack, str]) -> None:
    stack, _ = own
    settings = stack.settings.model_copy(
        update={"reconciliation": ReconciliationSettings(time_utc=time(22, 15), grace_seconds=0)}
    )
    client = stack.client
    try:
        assert await ensure_reconciliation_schedules(client, settings, ["paper"]) == [schedule_id("paper")]
        handle = client.get_schedule_handle(schedule_id("paper"))
        desc = await handle.describe()
        [cal] = desc.schedule.spec.calendars
        assert (cal.hour[0].start, cal.minute[0].start) == (22, 15)
        assert desc.schedule.spec.time_zone_name == "UTC"
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "ReconciliationWorkflow" and action.task_queue == settings.temporal.task_queue

        # Started again with another time: the same schedule, moved.
        moved = settings.model_copy(update={"reconciliation": ReconciliationSettings(time_utc=time(6, 5))})
        await ensure_reconciliation_schedules(client, moved, ["paper"])
        [cal] = (await handle.describe()).schedule.spec.calendars
        assert (cal.hour[0].start, cal.minute[0].start) == (6, 5)

        # Triggered, it runs a reconciliation whose report is kept.
        await handle.trigger()
        async with asyncio.timeout(30):
            while not (rows := await stack.fetch("SELECT workflow_id, counts FROM reconciliation_runs")):
                await asyncio.sleep(0.1)
        [row] = rows
        assert row["workflow_id"].startswith("reconcile-paper-scheduled")
        assert row["counts"] == {k.value: 0 for k in K}

        disabled = settings.model_copy(update={"reconciliation": ReconciliationSettings(schedule_enabled=False)})
        assert await ensure_reconciliation_schedules(client, disabled, ["paper"]) == []
    finally:
        await client.get_schedule_handle(schedule_id("paper")).delete()


def test_a_day_is_utc() -> None:
    from core.reconciliation import day_bounds

    start, end = day_bounds(datetime(2026, 3, 4, tzinfo=UTC).date())
    assert start == datetime(2026, 3, 4, tzinfo=UTC) and end - start == timedelta(days=1)
