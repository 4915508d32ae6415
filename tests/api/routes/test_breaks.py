"""GET /api/v1/breaks and /unmatched-reports, and resolving one: audited, announced, refused plainly when wrong.

Who may (roles, scope) is the auth matrix's (tests/api/test_auth_matrix.py); here the development principal.
"""

from __future__ import annotations

from store.breaks import add_break, add_unmatched_report
from store.stream import read_after
from tests.harness import Stack, unique
from tests.store.kit import decided


async def _announced(stack: Stack, kind: str, key: str, value: object) -> list[dict[str, object]]:
    async with stack.pool.connection() as conn:
        rows = await read_after(conn, 0, limit=100000)
    return [r["data"] for r in rows if r["kind"] == kind and r["data"].get(key) == value]


async def test_a_break_is_listed_resolved_with_a_reason_audited_and_announced(stack: Stack) -> None:
    async with stack.pool.connection() as conn:
        order = await decided(conn, client_id="desk-brk", account="desk-brk")
        await add_break(conn, order_id=order.order_id, broker="paper", kind="FILL_MISMATCH", detail="qty 5 vs 4")
    async with stack.api() as http:
        r = await http.get("/api/v1/breaks", params={"orderId": order.order_id})
        assert r.status_code == 200, r.text
        [row] = r.json()["data"]
        assert (row["kind"], row["detail"], row["clientId"], row["account"]) == (
            "FILL_MISMATCH",
            "qty 5 vs 4",
            "desk-brk",
            "desk-brk",
        )
        assert row["resolvedAt"] is None and r.json()["nextBefore"] is None

        r = await http.post(
            f"/api/v1/breaks/{row['id']}/resolve", json={"reason": "venue confirmed 4"}, headers={"X-Actor": "ops-7"}
        )
        assert r.status_code == 200, r.text
        done = r.json()
        assert (done["resolvedBy"], done["resolution"]) == ("ops-7", "venue confirmed 4") and done["resolvedAt"]

        again = await http.post(f"/api/v1/breaks/{row['id']}/resolve", json={"reason": "twice"})
        assert again.status_code == 409 and "already resolved by ops-7" in again.json()["message"]
        assert (await http.get("/api/v1/breaks", params={"orderId": order.order_id})).json()["data"] == []
        resolved = await http.get("/api/v1/breaks", params={"orderId": order.order_id, "status": "resolved"})
        assert [b["id"] for b in resolved.json()["data"]] == [row["id"]]

        audit = await http.get("/api/v1/audit", params={"action": "BREAK_RESOLVED", "subject": f"break:{row['id']}"})
        [entry] = audit.json()["data"]
        assert entry["actor"] == "ops-7" and entry["detail"]["reason"] == "venue confirmed 4"
    [announced] = await _announced(stack, "BREAK_RESOLVED", "id", row["id"])
    assert announced["resolvedBy"] == "ops-7" and announced["resolution"] == "venue confirmed 4"


async def test_bad_input_is_refused_naming_the_field(stack: Stack) -> None:
    async with stack.api() as http:
        cases = [
            (http.get("/api/v1/breaks", params={"status": "closed"}), 422, "status"),
            (http.get("/api/v1/breaks", params={"limit": "0"}), 422, "limit"),
            (http.get("/api/v1/breaks", params={"before": "-1"}), 422, "before"),
            (http.get("/api/v1/breaks", params={"orderId": "a b"}), 422, "orderId"),
            (http.get("/api/v1/unmatched-reports", params={"broker": "x;y"}), 422, "broker"),
            (http.post("/api/v1/breaks/abc/resolve", json={"reason": "x"}), 422, "break_id"),
            (http.post("/api/v1/breaks/1/resolve", json={"reason": ""}), 422, "reason"),
            (http.post("/api/v1/breaks/1/resolve", json={}), 422, "reason"),
            (http.post("/api/v1/breaks/1/resolve", json={"reason": "x", "by": "me"}), 422, "by"),
            (http.post("/api/v1/unmatched-reports/0/resolve", json={"reason": "x"}), 422, "report_id"),
        ]
        for call, status, field in cases:
            r = await call
            assert r.status_code == status, (field, r.text)
            assert field in [reason["field"] for reason in r.json()["reasons"]], (field, r.text)
        missing = await http.post(f"/api/v1/breaks/{2**62}/resolve", json={"reason": "x"})
        assert missing.status_code == 404 and str(2**62) in missing.json()["message"]
        missing = await http.post(f"/api/v1/unmatched-reports/{2**62}/resolve", json={"reason": "x"})
        assert missing.status_code == 404


async def test_an_unmatched_report_is_listed_and_resolved_once(stack: Stack) -> None:
    exec_id = unique("stray")
    async with stack.pool.connection() as conn:
        await add_unmatched_report(
            conn, broker="paper", exec_id=exec_id, cl_ord_id="ghost", reason="no workflow", report={"q": "1"}
        )
    async with stack.api() as http:
        listed = (await http.get("/api/v1/unmatched-reports", params={"broker": "paper", "limit": 500})).json()
        [row] = [u for u in listed["data"] if u["execId"] == exec_id]
        assert row["clientOrderId"] == "ghost" and row["report"] == {"q": "1"} and row["resolvedAt"] is None
        r = await http.post(
            f"/api/v1/unmatched-reports/{row['id']}/resolve", json={"reason": "venue test"}, headers={"X-Actor": "o"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["resolvedBy"] == "o" and r.json()["resolution"] == "venue test"
        assert (
            await http.post(f"/api/v1/unmatched-reports/{row['id']}/resolve", json={"reason": "x"})
        ).status_code == 409
        audit = await http.get("/api/v1/audit", params={"action": "UNMATCHED_REPORT_RESOLVED"})
        assert any(e["detail"].get("execId") == exec_id for e in audit.json()["data"])
    assert len(await _announced(stack, "UNMATCHED_RESOLVED", "execId", exec_id)) == 1
