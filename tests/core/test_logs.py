"""Log lines: JSON with the ids in context (readable on a terminal), secrets redacted, the request id carried
from ``X-Request-Id`` through the API into the order's workflow and its activities."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from api.main import create_app
from core.domain import OrderSide, OrderType, SubmitOrder, TimeInForce
from core.logs import JsonFormatter, TextFormatter, bind, bound, readable, redact, setup_logging
from core.propagation import HEADER, ContextInterceptor, _order_ids
from tests.api.routes.test_orders import order_body, wait_order
from tests.harness import Stack

D = Decimal


def _record(message: str, **extra: Any) -> logging.LogRecord:
    record = logging.getLogger("exodus.test").makeRecord("exodus.test", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_a_line_is_one_json_object_with_the_ids_in_context() -> None:
    with bind(request_id="req-1", principal="desk-a"), bind(order_id="EX1", broker="paper"):
        line = JsonFormatter().format(_record("order %s", exec_id="x-9"))
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["logger"] == "exodus.test" and entry["message"] == "order %s"
    assert entry["time"].endswith("+00:00")
    assert {k: entry[k] for k in ("request_id", "principal", "order_id", "broker", "exec_id")} == {
        "request_id": "req-1",
        "principal": "desk-a",
        "order_id": "EX1",
        "broker": "paper",
        "exec_id": "x-9",
    }
    assert bound() == {}
    # The SDK's own extras name the workflow (and so the order) of a line logged by workflow or activity code.
    entry = json.loads(JsonFormatter().format(_record("m", temporal_workflow={"workflow_id": "order-EX7"})))
    assert entry["workflow_id"] == "order-EX7" and entry["order_id"] == "EX7"


def test_readable_on_a_terminal_json_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for stream, formatter in ((Tty(), TextFormatter), (io.StringIO(), JsonFormatter)):
            handler = setup_logging(stream=stream)
            assert isinstance(handler.formatter, formatter)
            with bind(request_id="r-2"):
                logging.getLogger("exodus.test").info("hello")
            text = stream.getvalue()
            if formatter is TextFormatter:
                assert "INFO    exodus.test: hello  [request_id=r-2]" in text
            else:
                assert json.loads(text)["request_id"] == "r-2"
                assert readable(text.strip()).endswith("exodus.test: hello  [request_id=r-2]")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert readable("not json") == "not json"


SECRETS = {
    "api key": ("Authorization failed for exo_k1a2b3_S3cr3tS3cr3tS3cr3tS3cr3t", "S3cr3tS3cr3t"),
    "jwt": ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXNrLWEifQ.c2lnbmF0dXJlLXNlY3JldA", "c2lnbmF0dXJlLXNlY3JldA"),
    "bearer": ("headers: Authorization: Bearer tok-live-123456", "tok-live-123456"),
    "fix password": ("8=FIX.4.4\x019=70\x0135=A\x01553=desk\x01554=fixpass99\x0110=000\x01", "fixpass99"),
    "fix password (pipes)": ("35=A|553=desk|554=fixpass98|", "fixpass98"),
    "password pair": ("connect password=hunter22 user=x", "hunter22"),
    "json secret": ('{"secret_key": "alpaca-sekrit", "key_id": "PK1"}', "alpaca-sekrit"),
    "url": ("postgresql://exodus:pgpass77@db:5432/exodus", "pgpass77"),
}


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_secrets_are_redacted(name: str) -> None:
    text, secret = SECRETS[name]
    assert secret not in redact(text)
    line = JsonFormatter().format(_record(text))
    assert secret not in line, line


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the process, as JSON, while the test runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _header(payloads: Any) -> dict[str, Any]:
    fields = payloads.fields
    return json.loads(fields[HEADER].data) if HEADER in fields else {}


async def test_the_request_id_travels_from_the_api_into_the_workflow_and_its_activities(
    stack: Stack, captured: io.StringIO
) -> None:
    client = Client(**{**stack.client.config(), "interceptors": [ContextInterceptor()]})
    app = create_app(stack.settings, temporal=client, pool=stack.pool, instruments=stack.instruments)
    await stack.venue.set_mid("AAPL", D("190.00"))
    body = order_body(qty=3)
    request_id = f"desk-req-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        from store.auth import register_account

        async with stack.pool.connection() as conn:
            await register_account(conn, account=body["clientId"], actor="tests")
        r = await http.post("/api/v1/orders", json=body, headers={"X-Request-Id": request_id})
        assert r.status_code == 201, r.text
        assert r.headers["x-request-id"] == request_id
        order_id = r.json()["internalOrderId"]
        await wait_order(http, order_id, "FILLED")
        generated = await http.get("/health", headers={"X-Request-Id": "bad id\twith tab"})
        assert generated.headers["x-request-id"] != "bad id\twith tab" and len(generated.headers["x-request-id"]) == 32
    history = await client.get_workflow_handle(f"order-{order_id}").fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    assert _header(started.header)["request_id"] == request_id
    scheduled = [
        (
            e.activity_task_scheduled_event_attributes.activity_type.name,
            _header(e.activity_task_scheduled_event_attributes.header),
        )
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled and all(h.get("request_id") == request_id for _, h in scheduled), scheduled
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    access = [e for e in lines if e["logger"] == "api.access" and e.get("request_id") == request_id]
    assert access and access[0]["message"].startswith("POST /api/v1/orders 201")


async def test_an_activitys_ids_keep_the_clients_id_and_the_brokers_apart() -> None:
    # A broker activity's argument carries the id the broker knows the order by (cl_ord_id); the client's own id
    # (client_order_id) is another id, and a line must not show one under the other's name.
    order = SubmitOrder(
        cl_ord_id="EXLOG1.1",
        account="a",
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        qty=Decimal(1),
    )
    assert _order_ids((order,)) == {"cl_ord_id": "EXLOG1.1"}

    class Carrier:
        def __init__(self) -> None:
            self.order = order
            self.request = type("Request", (), {"client_order_id": "co-9", "broker": "paper"})()

    assert _order_ids((Carrier(),)) == {"cl_ord_id": "EXLOG1.1", "client_order_id": "co-9", "broker": "paper"}


@activity.defn(name="exodus_test_context")
async def _context_activity(payload: dict[str, str]) -> dict[str, str]:
    logging.getLogger("exodus.test.activity").info("in the activity")
    return dict(bound())


@workflow.defn(name="ExodusTestContext", sandboxed=False)
class _ContextWorkflow:
    @workflow.run
    async def run(self, payload: dict[str, str]) -> dict[str, str]:
        return await workflow.execute_activity(_context_activity, payload, start_to_close_timeout=timedelta(seconds=30))


async def test_an_activity_logs_with_the_request_id_and_its_workflow_and_order(
    stack: Stack, captured: io.StringIO
) -> None:
    client = Client(**{**stack.client.config(), "interceptors": [ContextInterceptor()]})
    queue = f"ctx-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[_ContextWorkflow], activities=[_context_activity]):
        with bind(request_id="req-77", principal="ops-amy"):
            ids = await client.execute_workflow(
                _ContextWorkflow.run, {"client_order_id": "co-1"}, id="order-EXCTX1", task_queue=queue
            )
    assert ids["request_id"] == "req-77" and ids["principal"] == "ops-amy"
    assert ids["workflow_id"] == "order-EXCTX1" and ids["order_id"] == "EXCTX1"
    assert ids["activity"] == "exodus_test_context"
    [line] = [json.loads(x) for x in captured.getvalue().splitlines() if "in the activity" in x]
    assert (line["request_id"], line["order_id"], line["workflow_id"]) == ("req-77", "EXCTX1", "order-EXCTX1")


def test_a_generator_bound_in_one_context_and_closed_in_another_ends_quietly() -> None:
    import contextvars

    from core.logs import bind, bound

    def stream() -> Iterator[str]:
        with bind(order_id="EX1"):
            yield bound()["order_id"]
            yield "more"

    gen = contextvars.copy_context().run(lambda: stream())
    ctx = contextvars.copy_context()
    assert ctx.run(next, gen) == "EX1"
    contextvars.copy_context().run(gen.close)  # another context: the token is not its own
    assert "order_id" not in bound()
