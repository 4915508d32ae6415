"""The orders table is the authority on idempotency keys and on reads.

Temporal keeps a closed workflow only for its namespace's retention period; the order's row stays. A key reused
after the workflow is gone must be answered from the row (the original order, or a 409 for other terms) and
never start a new run. A GET answers from the row whenever it exists, so it does not depend on a worker.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from psycopg.types.json import Jsonb
from temporalio.service import RPCError, RPCStatusCode

from api.main import create_app
from api.schemas import OrderCreate
from core.domain import OrderRequest, OrderState, RiskDecision, derive_order_id, workflow_id_for
from tests.harness import Stack, make_order, register_accounts, unique
from workflows.order import OrderWorkflow
from workflows.order_client import order_input

pytestmark = pytest.mark.asyncio


def order_body(**overrides: Any) -> dict[str, Any]:
    body = {"clientId": unique("idem"), "clientOrderId": unique("co"), "symbol": "AAPL", "side": "BUY", "qty": 10}
    body.update(overrides)
    return body


async def wait_status(http: httpx.AsyncClient, order_id: str, status: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            got = (await http.get(f"/api/v1/orders/{order_id}")).json()
            if got.get("status") == status:
                return got
            await asyncio.sleep(0.05)


async def gone(stack: Stack, order_id: str) -> bool:
    try:
        await stack.client.get_workflow_handle(workflow_id_for(order_id)).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return True
        raise
    return False


async def insert_row(stack: Stack, order: OrderRequest, status: str) -> None:
    """The row the risk activity writes (with its decision), as it outlives the workflow."""
    now = datetime.now(UTC)
    decision = RiskDecision(order_id=order.order_id, approved=True, decided_at=now, request_hash=order.request_hash)
    async with stack.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id,"
            " account, symbol, side, type, time_in_force, qty, price, broker, status, filled_qty, risk_decision,"
            " version, created_at, updated_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,2,%s,%s)",
            (
                order.order_id,
                workflow_id_for(order.order_id),
                order.idempotency_key,
                order.request_hash,
                order.client_id,
                order.client_order_id,
                order.account,
                order.symbol,
                order.side.value,
                order.type.value,
                order.time_in_force.value,
                order.qty,
                order.price,
                order.broker,
                status,
                order.qty if status == "FILLED" else 0,
                Jsonb(decision.model_dump(mode="json")),
                now,
                now,
            ),
        )


def as_api_would(body: dict[str, Any], key: str) -> OrderRequest:
    """The OrderRequest the API builds from ``body`` under the idempotency key header ``key``."""
    parsed = OrderCreate.model_validate(body)
    idem = f"{parsed.client_id}/key/{key}"
    return make_order(
        client_id=parsed.client_id, symbol=parsed.symbol, qty=parsed.qty, type=parsed.order_type.value
    ).model_copy(
        update={
            "order_id": derive_order_id(idem),
            "idempotency_key": idem,
            "request_hash": parsed.request_hash(),
            "client_order_id": parsed.client_order_id,
            "time_in_force": parsed.time_in_force,
        }
    )


async def test_a_key_reused_after_retention_deleted_its_workflow_is_answered_from_the_row(stack: Stack) -> None:
    """The row of a closed order whose workflow Temporal has deleted: a repeat starts nothing.

    (Deleting a workflow on the dev server takes about 35 s, so the test writes the row such an order leaves.)
    """
    body = order_body()
    order = as_api_would(body, "k-retained")
    await insert_row(stack, order, "FILLED")
    assert await gone(stack, order.order_id)
    async with stack.api() as http:
        same = await http.post("/api/v1/orders", json=body, headers={"X-Idempotency-Key": "k-retained"})
        assert same.status_code == 200, same.text
        assert same.json()["duplicate"] is True and same.json()["internalOrderId"] == order.order_id
        assert same.json()["orderStatus"] == "FILLED" and same.json()["status"] == "accepted"
        other = await http.post("/api/v1/orders", json={**body, "qty": 99}, headers={"X-Idempotency-Key": "k-retained"})
        assert other.status_code == 409, other.text
        assert other.json()["status"] == "conflict" and other.json()["internalOrderId"] == order.order_id
    assert await gone(stack, order.order_id)  # no new run was started for either
    [row] = await stack.fetch("SELECT qty, status FROM orders WHERE order_id = %s", order.order_id)
    assert row["qty"] == 10 and row["status"] == "FILLED"


async def test_a_key_reused_after_its_workflow_was_terminated_is_answered_from_the_row(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", 420)
    body = order_body(symbol="MSFT", type="LIMIT", price=400, timeInForce="GTC")
    async with stack.api() as http:
        first = await http.post("/api/v1/orders", json=body, headers={"X-Idempotency-Key": "k-1"})
        assert first.status_code == 201, first.text
        order_id = first.json()["internalOrderId"]
        await wait_status(http, order_id, "ACCEPTED")
        handle = stack.client.get_workflow_handle(workflow_id_for(order_id))
        await handle.terminate(reason="test")
        run_id = (await handle.describe()).run_id
        same = await http.post("/api/v1/orders", json=body, headers={"X-Idempotency-Key": "k-1"})
        assert same.status_code == 200 and same.json()["duplicate"] is True, same.text
        other = await http.post("/api/v1/orders", json={**body, "qty": 99}, headers={"X-Idempotency-Key": "k-1"})
        assert other.status_code == 409 and other.json()["internalOrderId"] == order_id
    described = await handle.describe()
    assert described.run_id == run_id and described.status is not None and described.status.name == "TERMINATED"


async def test_a_repeat_of_a_working_order_is_answered_from_the_row_without_temporal(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", 420)
    body = order_body(symbol="MSFT", type="LIMIT", price=400, timeInForce="GTC")
    async with stack.api() as http:
        first = await http.post("/api/v1/orders", json=body)
        assert first.status_code == 201
        order_id = first.json()["internalOrderId"]
        await wait_status(http, order_id, "ACCEPTED")
    # An API whose Temporal client fails every call still answers the repeat (and the conflict) from Postgres.
    app = create_app(stack.settings, temporal=Unreachable(), pool=stack.pool, instruments=stack.instruments)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        again = await http.post("/api/v1/orders", json=body)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        assert again.json()["orderStatus"] == "ACCEPTED"
        assert (await http.post("/api/v1/orders", json={**body, "qty": 11})).status_code == 409
        got = await http.get(f"/api/v1/orders/{order_id}")
        assert got.status_code == 200 and got.json()["source"] == "store" and got.json()["status"] == "ACCEPTED"
    async with stack.api() as http:
        assert (await http.post(f"/api/v1/orders/{order_id}/cancel")).status_code == 202


class Unreachable:
    """A Temporal client whose every call fails as if the server were down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise RPCError("unreachable", RPCStatusCode.UNAVAILABLE, b"")

        return fail


class Answers:
    """A Temporal client whose workflows answer the state query with a fixed state."""

    def __init__(self, state: OrderState) -> None:
        self.state = state
        self.queries = 0

    def get_workflow_handle(self, workflow_id: str) -> Any:
        outer = self

        class Handle:
            async def query(self, *args: Any, **kwargs: Any) -> OrderState:
                outer.queries += 1
                return outer.state

        return Handle()


async def test_an_order_without_a_row_yet_is_read_from_its_workflow(stack: Stack) -> None:
    order = make_order()
    state = OrderState.new(order, at=order.received_at)
    temporal = Answers(state)
    app = create_app(stack.settings, temporal=temporal, pool=stack.pool, instruments=stack.instruments)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        got = await http.get(f"/api/v1/orders/{order.order_id}")
    assert got.status_code == 200, got.text
    assert got.json()["source"] == "workflow" and got.json()["status"] == "RECEIVED"
    assert temporal.queries == 1


async def test_a_working_order_is_read_and_canceled_with_no_worker(stack: Stack) -> None:
    """The order's workflow is on a task queue nobody polls (the worker is down): GET and cancel still answer."""
    order = make_order(type="LIMIT", price="180.00")
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    handle = await stack.client.start_workflow(
        OrderWorkflow.run,
        order_input(order, stack.settings, config=stack.config()),
        id=workflow_id_for(order.order_id),
        task_queue=queue,
    )
    await insert_row(stack, order, "ACCEPTED")
    try:
        async with stack.api() as http, asyncio.timeout(4):  # a Temporal query to a queue nobody polls takes ~10 s
            got = await http.get(f"/api/v1/orders/{order.order_id}")
            assert got.status_code == 200 and got.json()["status"] == "ACCEPTED" and got.json()["source"] == "store"
            cancel = await http.post(f"/api/v1/orders/{order.order_id}/cancel", json={"reason": "worker down"})
            assert cancel.status_code == 202 and cancel.json()["orderStatus"] == "ACCEPTED"
    finally:
        await handle.terminate(reason="test over")
        async with stack.pool.connection() as conn:
            await conn.execute("UPDATE orders SET status = 'CANCELED' WHERE order_id = %s", (order.order_id,))


@pytest.mark.parametrize(
    "status", [RPCStatusCode.UNKNOWN, RPCStatusCode.CANCELLED, RPCStatusCode.INTERNAL, RPCStatusCode.UNAVAILABLE]
)
async def test_a_temporal_failure_while_its_server_restarts_is_503_not_500(stack: Stack, status: RPCStatusCode) -> None:
    # Killing the Temporal server mid-call fails in-flight calls with "transport error" (status UNKNOWN), seen in
    # the chaos run: that is as transient as UNAVAILABLE, and every order call may be retried with its key.
    class Failing:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise RPCError("transport error", status, b"")

            return fail

    body = {"clientId": "desk-rpc", "clientOrderId": uuid.uuid4().hex[:10], "symbol": "AAPL", "side": "BUY", "qty": 1}
    app = create_app(stack.settings, temporal=Failing(), pool=stack.pool, instruments=stack.instruments)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        await register_accounts(stack.pool, "desk-rpc")
        answer = await http.post("/api/v1/orders", json=body)
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "2"
