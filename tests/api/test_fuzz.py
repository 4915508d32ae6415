"""Property test over the API's own OpenAPI document: no request, valid or not, gets a 5xx.

Schemathesis generates requests for every operation from the app's OpenAPI document, both fitting the schema
(positive) and breaking it (negative: wrong types, missing fields, out-of-range values, odd bytes). Each one
is sent to the app in process; any 5xx fails the test, and Hypothesis shrinks it to a minimal request.

The app runs in a thread with its own event loop, its own Postgres database and its own Temporal namespace,
so what the fuzzer does (halting trading, replacing the risk policy, cancel-all) touches nothing else. No
worker polls its task queue: valid orders are answered 202 pending after a short decision timeout.
``EXODUS_FUZZ_EXAMPLES`` sets the examples per operation and mode (default 25, about 20 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Coroutine
from typing import Any

import httpx
import schemathesis
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from core.settings import ApiSettings, Mt5AccountSettings, Mt5Settings, Settings, TemporalSettings
from core.temporal import SEARCH_ATTRIBUTES
from tests.conftest import create_database, make_settings, temporal_address

EXAMPLES = int(os.environ.get("EXODUS_FUZZ_EXAMPLES", "25"))
BRIDGE_ACCOUNT = "fuzz-mt5"
BRIDGE_TOKEN = "tok-fuzz"


class AppThread:
    """The app, its lifespan and an in-process HTTP client on an event loop in a thread of their own."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app", daemon=True)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def __enter__(self) -> AppThread:
        self.thread.start()
        self.run(self._open())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    async def _open(self) -> None:
        self.app = create_app(self.settings)
        self.lifespan = self.app.router.lifespan_context(self.app)
        await self.lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        self.http = httpx.AsyncClient(transport=transport, base_url="http://fuzz.test", timeout=30)

    async def _close(self) -> None:
        await self.http.aclose()
        await self.lifespan.__aexit__(None, None, None)

    def send(self, kwargs: dict[str, Any]) -> httpx.Response | None:
        """Send a request built by schemathesis; None when it cannot be put on the wire at all."""
        request_kwargs = {k: v for k, v in kwargs.items() if k in ("method", "url", "headers", "params", "json")}
        if "data" in kwargs:
            request_kwargs["content"] = kwargs["data"]
        try:
            request = self.http.build_request(**request_kwargs)
        except (UnicodeEncodeError, TypeError, ValueError):
            return None  # e.g. a header value outside Latin-1: no HTTP client can send it
        return self.run(self.http.send(request))  # type: ignore[no-any-return]


def fuzz(app: AppThread) -> list[str]:
    schema = schemathesis.openapi.from_dict(app.app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 15
    tried: list[str] = []
    for operation in operations:
        if operation.path == "/api/v1/stream":
            continue  # an answer that never ends (its bad input: tests/api/test_stream.py)
        fixed: dict[str, Any] = {}
        if "/bridge/" in operation.path:
            fixed = {
                "path_parameters": {"account": BRIDGE_ACCOUNT},
                "headers": {"Authorization": f"Bearer {BRIDGE_TOKEN}"},
            }
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
            )
            @given(case=operation.as_strategy(mode, **(fixed if mode is GenerationMode.POSITIVE else {})))
            def check(case: Any) -> None:
                response = app.send(case.as_transport_kwargs(base_url="http://fuzz.test"))
                if response is None:
                    return
                tried.append(f"{case.method} {case.path}")
                if case.path == "/ready" and response.status_code == 503:
                    return  # its documented answer here: no worker polls the fuzz app's task queue
                assert response.status_code < 500, (
                    f"{case.method} {case.formatted_path} -> {response.status_code} {response.text[:500]}\n"
                    f"{case.as_curl_command(base_url='http://127.0.0.1:8000')}"
                )

            try:
                check()
            except Unsatisfiable:
                # Nothing in the schema to break (no parameters, or only unconstrained strings): no negative case.
                if mode is GenerationMode.POSITIVE:
                    raise
    return tried


async def test_no_generated_request_gets_a_server_error(
    postgres_admin_url: str, temporal_env: WorkflowEnvironment
) -> None:
    namespace = f"fuzz-{uuid.uuid4().hex[:8]}"
    await temporal_env.client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))
    )
    await temporal_env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES},
        )
    )
    url = await create_database(postgres_admin_url, prefix="exodus_fuzz")
    address = temporal_address(temporal_env)
    app_settings = make_settings(
        url,
        address,
        temporal=TemporalSettings(address=address, namespace=namespace, task_queue=f"fuzz-{uuid.uuid4().hex[:8]}"),
        api=ApiSettings(decision_timeout_seconds=0.2),
        mt5=Mt5Settings(accounts={BRIDGE_ACCOUNT: Mt5AccountSettings(token=BRIDGE_TOKEN)}),
    )

    def run() -> list[str]:
        with AppThread(app_settings) as app:
            return fuzz(app)

    tried = await asyncio.to_thread(run)
    # Every operation was reached with requests that could be sent (not all refused before sending).
    assert len(set(tried)) > 15, sorted(set(tried))
