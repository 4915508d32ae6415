"""Test kit for the OANDA adapter: the local OANDA venue served over loopback, an adapter started against it, and a
check of every answer against OANDA's own v20 document (``shared/specs/oanda-v20/v20.json``, Swagger 2.0)."""

from __future__ import annotations

import contextlib
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from brokers.base import ReportSink
from brokers.oanda.execution import OandaBroker
from brokers.oanda.store import OandaStore
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import OandaSettings
from devstack.venues.oanda.venue import OandaVenue, VenueServer
from tests.brokers.venuekit import Forwarder, RestPair, eventually, sim_venue

__all__ = ["ACCOUNT", "TOKEN", "Forwarder", "OandaPair", "SpecChecker", "eventually", "oanda_settings", "running_pair"]

TOKEN, ACCOUNT = "test-token-0123456789", "101-004-1234567-001"


def _spec_path() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (
            parent / "shared" / "specs" / "oanda-v20" / "v20.json",
            parent.parent / "shared" / "specs" / "oanda-v20" / "v20.json",
        ):
            if candidate.exists():
                return candidate
    raise FileNotFoundError("shared/specs/oanda-v20/v20.json not found beside the repository")


SPEC = _spec_path()


#: The concrete definition of a Transaction by its ``type`` (the document types the answers' transactions as the
#: base ``Transaction``, which has only the common fields; each is checked against what its type says it is).
_TRANSACTION_SCHEMAS = {
    "MARKET_ORDER": "MarketOrderTransaction",
    "MARKET_ORDER_REJECT": "MarketOrderRejectTransaction",
    "LIMIT_ORDER": "LimitOrderTransaction",
    "LIMIT_ORDER_REJECT": "LimitOrderRejectTransaction",
    "STOP_ORDER": "StopOrderTransaction",
    "STOP_ORDER_REJECT": "StopOrderRejectTransaction",
    "MARKET_IF_TOUCHED_ORDER": "MarketIfTouchedOrderTransaction",
    "MARKET_IF_TOUCHED_ORDER_REJECT": "MarketIfTouchedOrderRejectTransaction",
    "ORDER_FILL": "OrderFillTransaction",
    "ORDER_CANCEL": "OrderCancelTransaction",
    "ORDER_CANCEL_REJECT": "OrderCancelRejectTransaction",
}
_ORDER_SCHEMAS = {
    "MARKET": "MarketOrder",
    "LIMIT": "LimitOrder",
    "STOP": "StopOrder",
    "MARKET_IF_TOUCHED": "MarketIfTouchedOrder",
}

#: The document's errors, patched here (never in the file): path parameters it declares with a type that is not
#: Swagger's (``int``), and parameters it never resolves. Neither touches an answer's schema; they are listed so
#: that a new problem stands out (``test_the_spec_problems_are_the_known_ones``).
KNOWN_SPEC_PROBLEMS = {"mt4ServerIDPathParam: type 'int'"}


class SpecChecker:
    """Checks answers of the local venue against OANDA's v20 document (Swagger 2.0, JSON Schema draft 4 inside).

    Every definition is made strict (``additionalProperties: false``), so a field the venue invents fails. The
    document types the transactions and orders of an answer as their base definitions (``Transaction``,
    ``Order``), which have only the common fields: each is checked against the definition its ``type`` names
    (``LimitOrderTransaction``, ``LimitOrder``, ...). The document has no 429 and no 5xx answers (the README of
    ``shared/specs``), and does not describe the stream's lines: those are checked as ``Transaction`` by type and
    ``TransactionHeartbeat``. Errors it does not describe must have its error shape
    ``{"errorCode"?, "errorMessage"}``.
    """

    def __init__(self) -> None:
        self.document = json.loads(SPEC.read_text())
        self.definitions = copy.deepcopy(self.document["definitions"])
        for name, schema in self.definitions.items():
            # The base definitions (Transaction, Order) are extended by every concrete type: not strict.
            if name not in ("Transaction", "Order") and schema.get("type") == "object" and "properties" in schema:
                schema["additionalProperties"] = False
        self.checked: dict[str, int] = {}
        self.problems: list[str] = []
        # Literal paths first: /transactions/sinceid before /transactions/{transactionID}.
        self._paths = [
            (re.compile("^/v3" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p)
            for p in sorted(self.document["paths"], key=lambda p: (p.count("{"), p))
        ]

    def spec_problems(self) -> set[str]:
        """What is wrong with the document itself (the known problems, patched by not using them)."""
        problems = set()
        for name, param in self.document.get("parameters", {}).items():
            if param.get("type") not in (None, "string", "number", "integer", "boolean", "array", "file"):
                problems.add(f"{name}: type {param['type']!r}")
        return problems

    def _validate(self, instance: Any, schema: dict[str, Any]) -> None:
        from jsonschema import Draft4Validator

        resolver_schema = {**schema, "definitions": self.definitions}
        Draft4Validator(resolver_schema).validate(instance)

    def check_definition(self, instance: Any, name: str) -> None:
        """Validate ``instance`` against ``#/definitions/<name>`` (strict; raises when it does not match)."""
        self._validate(instance, {"$ref": f"#/definitions/{name}"})
        if name in ("Transaction",) or name.endswith("Transaction"):
            kind = instance.get("type")
            if kind == "HEARTBEAT":
                return
            concrete = _TRANSACTION_SCHEMAS.get(kind)
            assert concrete is not None, f"a transaction of type {kind!r} the venue should not make"
            self._validate(instance, {"$ref": f"#/definitions/{concrete}"})

    def check_order(self, instance: Any) -> None:
        """Validate an Order by its type."""
        self._validate(instance, {"$ref": "#/definitions/Order"})
        self._validate(instance, {"$ref": f"#/definitions/{_ORDER_SCHEMAS[instance['type']]}"})

    def _operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, name in self._paths:
            if pattern.match(path):
                return self.document["paths"][name].get(method.lower())
        return None

    def check_body(self, method: str, path: str, status: int, body: Any) -> None:
        """Validate one answer's body (raises when it does not match)."""
        operation = self._operation(method, path)
        assert operation is not None, f"{method} {path} is not in the document"
        response = operation["responses"].get(str(status))
        if response is None:
            assert status in (429, 500, 502, 503), f"{method} {path} answers {status}, which the document does not list"
            self._check_error(body)
            return
        if "$ref" in response:
            response = self.document["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = copy.deepcopy(response.get("schema") or {})
        if schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False
        self._validate(body, schema)
        if status >= 400:
            self._check_error(body)
        for key, value in body.items():
            if key.endswith("Transaction") and isinstance(value, dict):
                self.check_definition(value, "Transaction")
            elif key == "transactions":
                for txn in value:
                    self.check_definition(txn, "Transaction")
            elif key == "order":
                self.check_order(value)
            elif key == "orders":
                for order in value:
                    self.check_order(order)

    @staticmethod
    def _check_error(body: Any) -> None:
        assert isinstance(body, dict), body
        assert isinstance(body.get("errorMessage"), str) and body["errorMessage"], body
        assert body.get("errorCode") is None or isinstance(body["errorCode"], str), body

    def check(self, response: httpx.Response) -> None:
        """Validate one answer (the body must have been read); problems are kept in ``problems``."""
        request = response.request
        path = request.url.path
        key = f"{request.method} {re.sub(r'/orders/[^/]+', '/orders/{spec}', path)} {response.status_code}"
        self.checked[key] = self.checked.get(key, 0) + 1
        if path.endswith("/transactions/stream"):
            return
        try:
            body = response.json()
            self.check_body(request.method, path, response.status_code, body)
        except Exception as e:
            self.problems.append(f"{key}: {type(e).__name__}: {str(e)[:600]}")

    def check_stream_line(self, line: bytes) -> None:
        """Validate one line of the transaction stream."""
        message = json.loads(line)
        if message.get("type") == "HEARTBEAT":
            self._validate(message, {"$ref": "#/definitions/TransactionHeartbeat"})
        else:
            self.check_definition(message, "Transaction")

    def hooks(self) -> dict[str, list[Any]]:
        """httpx event hooks that check every answer the adapter gets."""

        async def on_response(response: httpx.Response) -> None:
            if response.request.url.path.endswith("/transactions/stream"):
                return
            await response.aread()
            self.check(response)

        return {"response": [on_response]}


def oanda_settings(base_url: str, **overrides: Any) -> OandaSettings:
    """Settings of an adapter talking to the local venue at ``base_url`` (short timeouts and backoffs)."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "stream_url": base_url,
        "token": SecretStr(TOKEN),
        "account_id": ACCOUNT,
        "request_timeout_seconds": 2.0,
        "max_backoff_seconds": 1.0,
        "max_retries": 8,
        "stream_timeout_seconds": 3.0,
        "quote_interval_ms": 0,
    }
    values.update(overrides)
    return OandaSettings(**values)


@dataclass(kw_only=True)
class OandaPair(RestPair[OandaBroker]):
    """A local OANDA venue and an adapter started against it."""

    broker_class = OandaBroker
    store_class = OandaStore
    store: OandaStore
    checker: SpecChecker

    @property
    def venue(self) -> OandaVenue:
        return self.server.venue  # type: ignore[no-any-return]

    def calm(self) -> None:
        self.venue.faults.pending.clear()
        self.venue.faults.latency = 0
        self.venue.rate_limit.limit = 0
        self.venue.rate_limit.window = 1.0


@contextlib.asynccontextmanager
async def running_pair(
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    *,
    sink: ReportSink,
    name: str | None = None,
    journal_url: str | None = None,
    quotes: QuoteSink | None = None,
    store_pool: AsyncConnectionPool | None = None,
    heartbeat_seconds: float = 0.5,
    lookup_done_orders: bool = True,
    **overrides: Any,
) -> AsyncIterator[OandaPair]:
    """A venue on a free loopback port and an adapter connected to it (its stream open, caught up).

    ``store_pool``: where the adapter keeps its records, when not ``pool`` (a ``FailingPool`` in storage tests).
    """
    sim = sim_venue(instruments, "oanda", pool=pool, journal_url=journal_url)
    venue = OandaVenue(
        sim,
        list(instruments),
        token=TOKEN,
        account_id=ACCOUNT,
        heartbeat_seconds=heartbeat_seconds,
        lookup_done_orders=lookup_done_orders,
    )
    async with OandaPair.running(
        VenueServer(venue),
        lambda url: oanda_settings(url, **overrides),
        SpecChecker(),
        spec="OANDA's v20 document",
        pool=pool,
        store_pool=store_pool,
        sink=sink,
        name=name or f"oanda-{uuid.uuid4().hex[:6]}",
        quotes=quotes,
        instruments=instruments,
    ) as pair:
        yield pair
