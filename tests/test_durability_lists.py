"""Kill the worker process while order lists are live, start another: nothing lost, nothing sent twice.

As ``tests/test_durability.py`` does for single orders: the worker is a real ``python -m worker`` subprocess (its
paper venue journals to Postgres), SIGKILLed while brackets' entries fill over several feed steps and their exits
are released and resized (``trigger: PARTIAL``); half the brackets protect with a STOP sent to the venue, half with
a trailing stop the coordinator holds on quotes (patch ``list-quote-triggers``). A new worker process takes over.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.domain import CancelRequest
from core.orderlist import ListBook, ListStatus, list_workflow_id
from tests.harness import register_accounts, unique
from tests.workerkit import (
    assert_ledger_is_the_venues,
    kill_worker,
    paper_venue_orders,
    start_worker,
    stop_worker,
    wait_ready,
    worker_stack,
)
from tests.workflows.test_order_list import wait_list
from workflows.order_list import OrderListWorkflow

pytestmark = pytest.mark.asyncio
D = Decimal
LISTS = 6


def body(account: str, i: int) -> dict[str, Any]:
    # Prices differ per list: risk refuses the same order twice within a second (the duplicate check).
    stop: dict[str, Any] = {"type": "STOP", "stopPrice": f"{175 + i}.00"}
    if i % 2:
        stop = {"type": "TRAILING_STOP", "trailPercent": "5"}
    return {
        # One account per list: a reduce-only exit is judged against its account's position and working sells.
        "clientId": f"{account}-{i}",
        "clientListId": f"l{i}",
        "contingency": "BRACKET",
        "trigger": "PARTIAL",
        "legs": [
            # Larger than the displayed size (500): the entry fills over several feed steps.
            {"name": "entry", "role": "PARENT", "symbol": "AAPL", "side": "BUY", "qty": 1200 + 100 * i},
            {
                "name": "tp",
                "role": "EXIT",
                "symbol": "AAPL",
                "side": "SELL",
                "qty": 1200 + 100 * i,
                "price": f"{200 + i}.00",
                "timeInForce": "GTC",
                "reduceOnly": True,
            },
            {
                "name": "sl",
                "role": "EXIT",
                "symbol": "AAPL",
                "side": "SELL",
                "qty": 1200 + 100 * i,
                "timeInForce": "GTC",
                "reduceOnly": True,
                **stop,
            },
        ],
    }


def protected(book: ListBook) -> bool:
    entry = book.leg("entry")
    if entry.status.value != "FILLED":
        return False
    tp, sl = book.leg("tp"), book.leg("sl")
    return tp.order_qty == entry.filled_qty and (sl.armed if sl.trigger else sl.order_qty == entry.filled_qty)


async def test_worker_killed_mid_list_loses_and_duplicates_nothing(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    async with worker_stack(
        temporal_env, postgres_admin_url, "exodus_durability_lists", EXODUS_ORDERS__TRAIL_CHECK_SECONDS="0.2"
    ) as w:
        env, pool, stack = w.env, w.pool, w.stack
        account = unique("durl")
        accounts = [f"{account}-{i}" for i in range(LISTS)]
        worker = start_worker(env, log)
        legs: dict[str, dict[str, str]] = {}
        try:
            async with stack.api() as http:
                await wait_ready(http)  # the worker is up when a list gets its decision
                await register_accounts(pool, *(f"{account}-{i}" for i in range(LISTS)))
                answers = await asyncio.gather(
                    *(http.post("/api/v1/order-lists", json=body(account, i)) for i in range(LISTS))
                )
                assert [r.status_code for r in answers] == [201] * LISTS, [r.text for r in answers]
                legs = {r.json()["listId"]: r.json()["legs"] for r in answers}
                handles = {
                    list_id: temporal_env.client.get_workflow_handle_for(
                        OrderListWorkflow.run, list_workflow_id(list_id)
                    )
                    for list_id in legs
                }
                # Killed once the first exits are out: entries still filling, exits being released and resized.
                await wait_list(next(iter(handles.values())), lambda b: b.leg("tp").released, timeout=30)
                kill_worker(worker)
                # (asked of the lists' rows: no worker answers a query now)
                rows = await stack.fetch("SELECT book FROM order_lists WHERE client_id = ANY(%s)", accounts)
                live = [ListBook.model_validate(r["book"]) for r in rows]
                assert not all(protected(b) for b in live), "killed too late: every list was protected already"
                worker = start_worker(env, log)
                await asyncio.gather(*(wait_list(h, protected, timeout=90) for h in handles.values()))
                # Close every list: the working exits are canceled, the held trailing stops dropped unsent.
                for h in handles.values():
                    await h.signal(OrderListWorkflow.cancel, CancelRequest(requested_by="desk", reason="end of test"))
                results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles.values())), timeout=90)
        finally:
            stop_worker(worker)
        detail = log.read_text()[-3000:]
        assert [r.status for r in results] == [ListStatus.DONE] * LISTS, (results, detail)
        assert all(r.legs == {"entry": "FILLED", "tp": "CANCELED", "sl": "CANCELED"} for r in results), results
        assert all(r.flags == [] for r in results), results

        # The venue saw each sent leg exactly once and never a second copy; held trailing stops never reached it.
        venue = await paper_venue_orders(stack)
        sent = sorted(o["client_order_id"] for o in venue)
        expected = sorted(
            ids[name]
            for i, ids in enumerate(legs.values())
            for name in ("entry", "tp", "sl")
            if not (name == "sl" and body(account, i)["legs"][2]["type"] == "TRAILING_STOP")
        )
        # (A resize is a cancel/replace at the venue: the replacement's id is the order's with a ".n" suffix.)
        assert len(sent) == len(set(sent)) and sorted({cid.split(".")[0] for cid in sent}) == expected

        # The ledger holds exactly the venue's fills, and the position is the entries' (the exits never filled).
        ledger = await stack.fetch("SELECT exec_id, qty, price FROM fills WHERE account = ANY(%s)", accounts)
        assert_ledger_is_the_venues(venue, ledger)
        positions = await stack.fetch(
            "SELECT account, qty FROM positions WHERE account = ANY(%s) AND symbol = 'AAPL'", accounts
        )
        assert {p["account"]: p["qty"] for p in positions} == {a: D(1200 + 100 * i) for i, a in enumerate(accounts)}
        # Each list's row in Postgres is its final book.
        rows = await stack.fetch("SELECT status FROM order_lists WHERE client_id = ANY(%s)", accounts)
        assert [r["status"] for r in rows] == ["DONE"] * LISTS
