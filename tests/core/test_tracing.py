"""OpenTelemetry: off unless configured; one order's spans (REST call, workflow, risk check, broker call, booking)
form one tree, captured in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client

from api.main import create_app
from core.instruments import InstrumentCatalog
from core.settings import Settings, TemporalSettings
from core.temporal import interceptors
from core.tracing import configured, temporal_interceptor, use_provider
from store.auth import register_account
from tests.api.routes.test_orders import order_body, wait_order
from tests.harness import Stack, paper_broker

D = Decimal


def test_tracing_is_off_unless_the_otel_variables_ask_for_it() -> None:
    assert not configured({})
    assert configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert configured({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert temporal_interceptor() is None  # nothing installed: no tracing interceptor on clients and workers


@pytest.fixture
async def spans() -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_provider(provider)
    try:
        yield exporter
    finally:
        use_provider(None)


async def test_one_orders_spans_form_one_tree(
    spans: InMemorySpanExporter,
    stack: Stack,
    settings: Settings,
    database_url: str,
    instruments: InstrumentCatalog,
) -> None:
    # A client and a worker of their own: both carry the tracing interceptor because tracing is on.
    client = Client(**{**stack.client.config(), "interceptors": interceptors()})
    traced = settings.model_copy(
        update={
            "temporal": TemporalSettings(address=settings.temporal.address, task_queue=f"trace-{uuid.uuid4().hex[:8]}")
        }
    )
    brokers = {
        "paper": paper_broker(instruments, stack.pool, database_url, journal_key=f"trace-{uuid.uuid4().hex[:6]}")
    }
    body = order_body(qty=4)
    async with Stack.running(client, traced, stack.pool, instruments, brokers) as s:
        await s.venue.set_mid("AAPL", D("190.00"))
        async with stack.pool.connection() as conn:
            await register_account(conn, account=body["clientId"], actor="tests")
        app = create_app(traced, temporal=client, pool=stack.pool, instruments=instruments)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
            r = await http.post("/api/v1/orders", json=body)
            assert r.status_code == 201, r.text
            order_id = r.json()["internalOrderId"]
            await wait_order(http, order_id, "FILLED")
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    [root] = [s for s in finished if s.parent is None and s.name.startswith("POST /api/v1/orders")]
    tree = [s for s in finished if s.context.trace_id == root.context.trace_id]
    by_id = {s.context.span_id: s for s in tree}

    def chain(span: ReadableSpan) -> list[str]:
        names = []
        while span.parent is not None:
            parent = by_id.get(span.parent.span_id)
            assert parent is not None, f"{span.name}: its parent is not in the order's trace"
            names.append(parent.name)
            span = parent
        return names

    names = {s.name for s in tree}
    for wanted in (
        "RunWorkflow:OrderWorkflow",
        "RunActivity:check_order",  # the risk check
        "RunActivity:submit_order",  # the broker call
        "RunActivity:persist_order",  # the booking
    ):
        assert wanted in names, sorted(names)
        [span] = [s for s in tree if s.name == wanted][:1]
        assert chain(span)[-1] == root.name, (wanted, chain(span))
    assert any(n.startswith(("StartUpdateWithStartWorkflow", "StartWorkflow")) for n in names), sorted(names)
