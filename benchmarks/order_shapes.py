"""The engine work of each kind of order: history events and workflow tasks per order shape, from real histories.

Each shape is one real order through the REST API on the stack under test; its history is counted with
``benchmarks.shape.history_shape``. The shapes: a market order filled by one report, a market order filled over
several reports (larger than the paper venue's displayed size), a limit order that rests and is canceled, and an
order the risk check denies.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.client import Client

from benchmarks.load import order_body
from benchmarks.shape import history_shape

__all__ = ["SHAPES", "order_shapes"]

#: Shape name -> (what changes in the benchmark's order body, cancel it once it rests).
SHAPES: dict[str, tuple[dict[str, Any], bool]] = {
    "market, one fill": ({"qty": 10}, False),
    "market, several fills": ({"qty": 1400, "timeInForce": "GTC"}, False),
    "limit, rests, canceled": (
        {"symbol": "AAPL", "qty": 10, "side": "BUY", "type": "LIMIT", "price": "180", "timeInForce": "GTC"},
        True,
    ),
    "denied by risk": ({"qty": 90_000_000}, False),
}


async def _rests(http: httpx.AsyncClient, url: str) -> None:
    for _ in range(100):
        r = await http.get(url)
        if r.status_code == 200 and r.json().get("status") in ("ACCEPTED", "PARTIALLY_FILLED"):
            return
        await asyncio.sleep(0.1)


async def order_shapes(http: httpx.AsyncClient, api_url: str, client: Client, run_id: str) -> dict[str, Any]:
    """Each shape's history counts (``events``, ``workflow_tasks``, signals...), or the error that prevented it."""
    out: dict[str, Any] = {}
    for i, (name, (changes, cancel)) in enumerate(SHAPES.items()):
        body = {**order_body(run_id, i), **changes, "clientOrderId": f"shape-{i}"}
        try:
            r = await http.post(f"{api_url}/api/v1/orders", json=body)
            answer = r.json()
            expected = 422 if name == "denied by risk" else 201
            if r.status_code != expected or "workflowId" not in answer:
                out[name] = {"error": f"HTTP {r.status_code}: {r.text[:200]}"}
                continue
            if cancel:
                order_url = f"{api_url}/api/v1/orders/{answer['internalOrderId']}"
                await _rests(http, order_url)
                await http.post(f"{order_url}/cancel", json={"reason": "benchmark shape"})
            handle = client.get_workflow_handle(answer["workflowId"])
            await asyncio.wait_for(handle.result(), timeout=60)
            out[name] = history_shape(await handle.fetch_history())
        except Exception as e:  # a shape that cannot be measured is reported, not fatal
            out[name] = {"error": repr(e)[:200]}
    return out
