"""The audit routes end to end: the trail's check, the export by period, and what an order's life leaves behind."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from core.audit import take_checkpoint
from core.audit_cli import order_history
from core.settings import AuditSettings
from tests.api.routes.test_orders import order_body, wait_order
from tests.harness import Stack

pytestmark = pytest.mark.asyncio
D = Decimal


async def test_verify_answers_ok_then_names_a_forged_checkpoint(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.jsonl"
    settings = stack.settings.model_copy(update={"audit": AuditSettings(checkpoint_file=path, checkpoint_key="k")})
    async with stack.api(settings) as http:
        r = await http.get("/api/v1/audit/verify")
        assert r.status_code == 200 and r.json()["ok"] is True and r.json()["checkpoints"] == 0, r.text
        async with stack.pool.connection() as conn:
            cp = await take_checkpoint(conn, path, "k")
        r = await http.get("/api/v1/audit/verify")
        assert r.status_code == 200 and r.json()["signedCheckpoints"] == 1, r.text
        path.write_text(path.read_text() + json.dumps({**cp, "count": cp["count"] + 1}) + "\n")
        r = await http.get("/api/v1/audit/verify")
        assert r.status_code == 409 and r.json()["ok"] is False
        assert "signature is wrong" in r.json()["problems"][0]


async def test_one_order_is_exported_and_its_life_told_from_postgres(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    body = order_body(qty=5)
    before = datetime.now(UTC) - timedelta(seconds=1)
    async with stack.api() as http:
        r = await http.post("/api/v1/orders", json=body, headers={"X-Actor": "desk-bob"})
        assert r.status_code == 201, r.text
        order_id = r.json()["internalOrderId"]
        await wait_order(http, order_id, "FILLED")
        until = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        window = {"from": before.isoformat(), "to": until}
        r = await http.get("/api/v1/audit/export", params={**window, "kind": "orders"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "attachment" in r.headers["content-disposition"]
        orders = {row["order_id"]: row for row in csv.DictReader(io.StringIO(r.text))}
        assert orders[order_id]["status"] == "FILLED" and orders[order_id]["client_id"] == body["clientId"]
        r = await http.get("/api/v1/audit/export", params={**window, "kind": "fills", "format": "jsonl"})
        fills = [json.loads(line) for line in r.text.splitlines()]
        assert [f["qty"] for f in fills if f["order_id"] == order_id] == ["5"]
        r = await http.get("/api/v1/audit/export", params={**window, "kind": "risk", "format": "jsonl"})
        decisions = [json.loads(line) for line in r.text.splitlines()]
        assert [d["action"] for d in decisions if d["subject"] == order_id] == ["RISK_APPROVED"]
        r = await http.get("/api/v1/audit/export", params={"from": "2026-13-01", "to": until})
        assert r.status_code == 422 and r.json()["reasons"][0]["field"] == "from"
        r = await http.get("/api/v1/audit/export", params={"from": until, "to": before.isoformat()})
        assert r.status_code == 422 and r.json()["reasons"][0]["field"] == "to"
        r = await http.get("/api/v1/audit/export", params={**window, "kind": "secrets"})
        assert r.status_code == 422
    async with stack.pool.connection() as conn:
        history = await order_history(conn, order_id)
    assert history is not None
    assert history["order"]["status"] == "FILLED"
    kinds = [e["kind"] for e in history["timeline"]]
    assert kinds[0] == "RECEIVED" and "FILL" in kinds
    assert [f["qty"] for f in history["fills"]] == [D(5)]
    assert [a["action"] for a in history["audit"]] == ["RISK_APPROVED"]


async def test_an_amend_is_audited_before_it_is_sent_and_its_outcome_after(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", D("420.00"))
    async with stack.api() as http:
        r = await http.post(
            "/api/v1/orders", json=order_body(symbol="MSFT", type="LIMIT", price="400.00", timeInForce="GTC")
        )
        assert r.status_code == 201, r.text
        order_id = r.json()["internalOrderId"]
        await wait_order(http, order_id, "ACCEPTED")
        r = await http.patch(f"/api/v1/orders/{order_id}", json={"price": "401.00"}, headers={"X-Actor": "ops-amy"})
        assert r.status_code == 200, r.text
        await http.post(f"/api/v1/orders/{order_id}/cancel", json={"reason": "done"}, headers={"X-Actor": "ops-amy"})
    rows = await stack.fetch("SELECT actor, action, detail FROM audit_log WHERE subject = %s ORDER BY id", order_id)
    people = [(r["actor"], r["action"]) for r in rows if r["actor"] == "ops-amy"]
    assert people == [
        ("ops-amy", "AMEND_REQUESTED"),
        ("ops-amy", "RISK_AMEND_APPROVED"),  # the workflow's risk check, in its own transaction
        ("ops-amy", "AMEND_ACCEPTED"),
        ("ops-amy", "CANCEL_REQUESTED"),
        ("ops-amy", "CANCEL_SENT"),
    ]
    assert rows[[r["action"] for r in rows].index("AMEND_REQUESTED")]["detail"] == {"request": {"price": "401.00"}}
