"""Test kit for the Kraken adapter: the local Kraken venue served over loopback, an adapter started against it,
and a check of every answer against Kraken's own spot REST OpenAPI document (``shared/specs/kraken-spot-rest``)."""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from brokers.base import ReportSink
from brokers.kraken.execution import KrakenBroker
from brokers.kraken.store import KrakenStore
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import KrakenSettings
from devstack.venues.kraken.venue import KrakenVenue, VenueServer
from tests.brokers.venuekit import Forwarder, OpenApiRequest, OpenApiResponse, RestPair, eventually, sim_venue

__all__ = [
    "KEY",
    "SECRET",
    "SPEC",
    "Forwarder",
    "KrakenPair",
    "SpecChecker",
    "eventually",
    "kraken_settings",
    "running_pair",
]

KEY = "kraken-test-key"
SECRET = base64.b64encode(b"kraken-test-secret-0123456789abcdef").decode()


def _spec_path() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        for candidate in (
            parent / "shared" / "specs" / "kraken-spot-rest" / "openapi_v3.yaml",
            parent.parent / "shared" / "specs" / "kraken-spot-rest" / "openapi_v3.yaml",
        ):
            if candidate.exists():
                return candidate
    raise FileNotFoundError("shared/specs/kraken-spot-rest/openapi_v3.yaml not found beside the repository")


SPEC = _spec_path()


def _inlined(path: Path) -> Any:
    """A schema file with its relative references made absolute (so it can be placed in the root document)."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: walk(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#") and "://" not in ref:
                out["$ref"] = (path.parent / ref).resolve().as_uri()
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(yaml.safe_load(path.read_text()))


def _error_fixed(schema: Any) -> Any:
    """``error`` declared as an array of ``error.yaml`` (itself an array of strings) is ``error.yaml``."""
    error = (schema.get("properties") or {}).get("error") if isinstance(schema, dict) else None
    items = (error or {}).get("items") or {}
    if isinstance(items, dict) and str(items.get("$ref", "")).endswith("errors/error.yaml"):
        schema["properties"]["error"] = {"$ref": items["$ref"]}
    return schema


def load_document() -> dict[str, Any]:
    """Kraken's document with its known errors patched here, not in the file.

    * ``country_code`` is typed ``'ISO 3166-1 alpha-2'`` (not an OpenAPI type): a string.
    * Several answers (``AddOrder``, ``AmendOrder``, ``CancelOrder``...) declare ``error`` as an array of
      ``error.yaml``, itself an array of strings, so ``["EOrder:..."]`` could never match: ``error`` is
      ``error.yaml`` (an array of strings, as the other answers declare it).
    * ``QueryOrders``' ``result`` is declared as ``oneOf`` an open and a closed order, but Kraken answers a map of
      txid to order info (its own example does), and since neither schema requires anything every order matches
      both, so ``oneOf`` can never hold: the result is a map of txid to order info (the closed order's schema, the
      open one's with ``closetm`` and ``reason``).
    """
    document = yaml.safe_load(SPEC.read_text())
    for path in document["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("name") == "country_code":
                    parameter["schema"] = {"type": "string"}
    for path in document["paths"].values():
        for operation in path.values():
            content = (
                (operation.get("responses", {}).get("200") or {}).get("content", {})
                if isinstance(operation, dict)
                else {}
            )
            answer = content.get("application/json")
            ref = (answer or {}).get("schema", {}).get("$ref", "")
            if ref.startswith("./"):
                answer["schema"] = _error_fixed(_inlined(SPEC.parent / ref))
            elif answer and isinstance(answer.get("schema"), dict):
                answer["schema"] = _error_fixed(answer["schema"])  # declared inline (QueryTrades)
    answer = document["paths"]["/private/QueryOrders"]["post"]["responses"]["200"]["content"]["application/json"]
    answer["schema"] = {
        "type": "object",
        "properties": {
            "result": {
                "type": "object",
                "additionalProperties": {"$ref": "./schemas/objects/user/orders/closed.yaml"},
            },
            "error": {"$ref": "./schemas/objects/errors/error.yaml"},
        },
    }
    return document


class SpecChecker:
    """Checks the local venue's answers against Kraken's spot REST document.

    Every JSON answer of an endpoint the document describes is validated with openapi-core against the path's
    200 answer (Kraken answers errors with 200 too: ``{"error": [...]}`` fits the same schema), and every error
    must be a list of Kraken's ``<E-class>:<text>`` strings. Injected gateway errors (HTML 5xx) and dropped answers
    are not Kraken's JSON and are not checked.
    """

    def __init__(self) -> None:
        from openapi_core import OpenAPI

        self.openapi = OpenAPI.from_dict(load_document(), base_uri=SPEC.as_uri())
        self.checked: dict[str, int] = {}
        self.problems: list[str] = []

    def check(self, response: httpx.Response) -> None:
        """Validate one answer (the body must have been read); problems are kept in ``problems``."""
        if response.status_code >= 500 or not response.headers.get("content-type", "").startswith("application/json"):
            return
        request = response.request
        name = f"{request.method} {request.url.path}"
        try:
            body = response.json()
            assert isinstance(body, dict) and isinstance(body.get("error"), list), body
            for error in body["error"]:
                assert isinstance(error, str) and error[:1] == "E" and ":" in error, error
            self.openapi.validate_response(
                OpenApiRequest(request, host_url="https://api.kraken.com", body=False), OpenApiResponse(response)
            )
        except Exception as e:
            cause = str(getattr(e, "__cause__", None) or e)
            self.problems.append(f"{name}: {type(e).__name__}: {cause[-600:]}")
        self.checked[name] = self.checked.get(name, 0) + 1

    def hooks(self) -> dict[str, list[Any]]:
        """httpx event hooks that check every answer the adapter gets."""

        async def on_response(response: httpx.Response) -> None:
            await response.aread()  # a transport error here is the adapter's to see
            self.check(response)

        return {"response": [on_response]}


def kraken_settings(base_url: str, **overrides: Any) -> KrakenSettings:
    """Settings of an adapter talking to the local venue at ``base_url`` (short timeouts, fast polls)."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "api_key": SecretStr(KEY),
        "api_secret": SecretStr(SECRET),
        "request_timeout_seconds": 2.0,
        "max_backoff_seconds": 1.0,
        "max_retries": 8,
        "poll_interval_ms": 200,
        "quote_interval_ms": 0,
        "tier": "pro",
        # The venue keeps no call counter unless a test sets one: the adapter's own need not hold the tests back.
        "call_counter_limit": 200.0,
        "call_counter_decay": 50.0,
        "deadline_seconds": 10.0,
    }
    values.update(overrides)
    return KrakenSettings(**values)


@dataclass(kw_only=True)
class KrakenPair(RestPair[KrakenBroker]):
    """A local Kraken venue and an adapter started against it."""

    broker_class = KrakenBroker
    store_class = KrakenStore
    store: KrakenStore
    checker: SpecChecker

    @property
    def venue(self) -> KrakenVenue:
        return self.server.venue  # type: ignore[no-any-return]

    def calm(self) -> None:
        self.venue.faults.pending.clear()
        self.venue.faults.latency = 0
        self.venue.throttle(0, 1.0)


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
    **overrides: Any,
) -> AsyncIterator[KrakenPair]:
    """A venue on a free loopback port and an adapter polling it (caught up once).

    ``store_pool``: where the adapter keeps its records, when not ``pool`` (a ``FailingPool`` in storage tests).
    """
    sim = sim_venue(instruments, "kraken", pool=pool, journal_url=journal_url)
    venue = KrakenVenue(sim, list(instruments), api_key=KEY, api_secret=SECRET)
    async with KrakenPair.running(
        VenueServer(venue),
        lambda url: kraken_settings(url, **overrides),
        SpecChecker(),
        spec="Kraken's OpenAPI document",
        pool=pool,
        store_pool=store_pool,
        sink=sink,
        name=name or f"kraken-{uuid.uuid4().hex[:6]}",
        quotes=quotes,
        instruments=instruments,
    ) as pair:
        yield pair
