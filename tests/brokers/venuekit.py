"""What the broker test kits share: a local venue served over loopback with an adapter started against it.

Each broker's ``kit.py`` (``tests/brokers/<broker>/kit.py``) builds its venue and settings and says how to make
its adapter (``VenuePair.new_broker``); starting it, waiting until it has caught up, restarting it over the same
records, checking the venue's answers against the broker's spec at the end and closing everything is here
(:func:`serving`), as are the report :class:`Forwarder` and :func:`eventually`, and the request/answer shapes
openapi-core reads (:class:`OpenApiRequest`, :class:`OpenApiResponse`) for the kits whose broker publishes one.
The REST brokers' kits (Alpaca, OANDA, Kraken) build their pairs as a :class:`RestPair` over a :func:`sim_venue`,
and their conftests' fault controls are :class:`PairFaults`.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import httpx
from psycopg_pool import AsyncConnectionPool

from brokers.base import ReportSink
from core.domain import ExecutionReport
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from sim.journal import PostgresVenueJournal
from sim.venue import SimVenue
from tests.waiting import until

__all__ = [
    "Forwarder",
    "OpenApiRequest",
    "OpenApiResponse",
    "PairFaults",
    "RestPair",
    "VenuePair",
    "eventually",
    "serving",
    "sim_venue",
]


class Forwarder:
    """A report sink that passes reports on to whichever sink a test sets (module-scoped pairs)."""

    def __init__(self) -> None:
        self.target: ReportSink | None = None

    async def __call__(self, report: ExecutionReport) -> None:
        if self.target is not None:
            await self.target(report)


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy (``tests.waiting.until``, 10 s)."""
    return await until("condition", check, timeout=timeout, interval=interval)


class OpenApiRequest:
    """An httpx request as openapi-core reads one, as if sent to ``host_url`` (the broker's real host)."""

    def __init__(self, request: httpx.Request, *, host_url: str, path: str | None = None, body: bool = True) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers, ImmutableMultiDict

        self.host_url = host_url
        self.path = path or request.url.path
        self.method = request.method.lower()
        self.body = (request.content or None) if body else None
        self.content_type = request.headers.get("content-type", "application/json") if body else "application/json"
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())), header=Headers(dict(request.headers))
        )


class OpenApiResponse:
    """An httpx answer as openapi-core reads one (its body must have been read)."""

    def __init__(self, response: httpx.Response) -> None:
        from werkzeug.datastructures import Headers

        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "application/json")
        self.headers = Headers(dict(response.headers))
        self.data = response.content


class _Adapter(Protocol):
    caught_up: asyncio.Event

    async def start(self, sink: ReportSink) -> None: ...

    async def close(self) -> None: ...


class _Server(Protocol):
    async def stop(self) -> None: ...


class _Checker(Protocol):
    problems: list[str]


B = TypeVar("B", bound=_Adapter)


@dataclass(kw_only=True)
class VenuePair(Generic[B]):
    """A local venue (``server``) and an adapter (``broker``) started against it; every adapter started is closed."""

    server: Any
    broker: B = None  # type: ignore[assignment]  # set by serving()
    settings: Any
    pool: AsyncConnectionPool
    sink: ReportSink
    name: str
    started: list[B] = field(default_factory=list)

    @property
    def venue(self) -> Any:
        return self.server.venue

    def new_broker(self, **overrides: Any) -> B:
        """Another adapter over the same records (a restarted worker), not started."""
        raise NotImplementedError

    def _settings(self, overrides: dict[str, Any]) -> Any:
        return self.settings.model_copy(update=overrides) if overrides else self.settings

    async def restart(self, sink: ReportSink | None = None) -> B:
        """Close the adapter and start a new one over the same records (its reports go to ``sink``)."""
        await self.broker.close()
        broker = self.new_broker()
        self.started.append(broker)
        await broker.start(sink or self.sink)
        await asyncio.wait_for(broker.caught_up.wait(), 15)
        self.broker = broker
        return broker


P = TypeVar("P", bound=VenuePair[Any])


@contextlib.asynccontextmanager
async def serving(pair: P, *, checker: _Checker | None = None, spec: str = "") -> AsyncIterator[P]:
    """Start ``pair``'s first adapter (``pair.broker`` is set here), wait until it has caught up, yield the pair;
    then every answer the checker saw must have matched ``spec`` (the broker's document), and all is closed.

    ``pair.server`` is already started; it is stopped here in any case.
    """
    try:
        broker = pair.new_broker()
        pair.broker = broker
        pair.started.append(broker)
        await broker.start(pair.sink)
        await asyncio.wait_for(broker.caught_up.wait(), 15)
        yield pair
        if checker is not None:
            assert not checker.problems, f"answers that do not match {spec}:\n" + "\n".join(checker.problems)
    finally:
        for started in pair.started:
            await started.close()
        await pair.server.stop()


def sim_venue(
    instruments: InstrumentCatalog,
    broker: str,
    *,
    pool: AsyncConnectionPool | None = None,
    journal_url: str | None = None,
    **options: Any,
) -> SimVenue:
    """The market behind ``broker``'s local venue (``<broker>venue``, no background ticks), journaled in Postgres
    under a fresh key (``<broker>-venue-…``) when ``journal_url`` is given."""
    journal = None
    if journal_url is not None:
        assert pool is not None, "a journaled venue needs the pool"
        journal = PostgresVenueJournal(pool, journal_url, venue=f"{broker}-venue-{uuid.uuid4().hex[:6]}")
    return SimVenue(instruments, name=f"{broker}venue", tick_interval=0, journal=journal, **options)


class _HttpChecker(_Checker, Protocol):
    def hooks(self) -> dict[str, list[Any]]: ...


@dataclass(kw_only=True)
class RestPair(VenuePair[B]):
    """A local REST venue and an adapter of ``broker_class`` keeping its records in ``store``, every answer it gets
    checked by ``checker`` against the broker's document."""

    #: The adapter's class (built as the REST adapters are: settings, store, name, quotes, instruments, hooks).
    broker_class: ClassVar[type[Any]]
    #: The class of the adapter's records (built over a pool, for the adapter's name).
    store_class: ClassVar[type[Any]]

    store: Any
    checker: _HttpChecker
    quotes: QuoteSink | None = None
    instruments: InstrumentCatalog | None = None

    def calm(self) -> None:
        """Put the venue back to what each contract test starts from: no pending faults, no latency, no limit."""
        raise NotImplementedError

    def new_broker(self, **overrides: Any) -> B:
        return self.broker_class(
            self._settings(overrides),
            store=self.store,
            name=self.name,
            quotes=self.quotes,
            instruments=self.instruments,
            http_hooks=self.checker.hooks(),
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls,
        server: Any,
        settings: Callable[[str], Any],
        checker: _HttpChecker,
        *,
        spec: str,
        pool: AsyncConnectionPool,
        sink: ReportSink,
        name: str,
        store_pool: AsyncConnectionPool | None = None,
        quotes: QuoteSink | None = None,
        instruments: InstrumentCatalog | None = None,
    ) -> AsyncIterator[Self]:
        """Start ``server``, and an adapter with ``settings(server.base_url)`` against it (:func:`serving`), its
        records in ``store_pool`` (default ``pool``); every answer must have matched ``spec`` at the end."""
        await server.start()
        pair = cls(
            server=server,
            settings=settings(server.base_url),
            store=cls.store_class(store_pool or pool, broker=name),
            pool=pool,
            sink=sink,
            checker=checker,
            name=name,
            quotes=quotes,
            instruments=instruments,
        )
        async with serving(pair, checker=checker, spec=spec) as pair:
            yield pair


class PairFaults(Generic[P]):
    """What the contract's ``FaultControl`` over a pair's local venue shares (every fault offered): a lost answer,
    a stall past the adapter's timeout and a 503 before anything are each ``_add``-ed as the venue's fault
    ``drop_after``, ``stall_after`` or ``error_before`` on the operation's request (``ops``: its method and path);
    a restart restarts the pair's adapter."""

    #: The contract's operations (submit, cancel, replace, status): the method and path of the venue's request.
    ops: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, pair: P) -> None:
        self.pair = pair

    def offers(self, kind: str, op: str = "") -> bool:
        return True

    def _add(self, kind: str, op: str, times: int = 1, **kw: object) -> None:
        method, path = self.ops[op]
        self.pair.venue.faults.add(kind, method=method, path=path, times=times, **kw)

    def lose_answer(self, op: str) -> None:
        self._add("drop_after", op)

    def stall(self, op: str) -> None:
        self._add("stall_after", op, seconds=self.pair.settings.request_timeout_seconds + 1)

    def fail_before(self, op: str, times: int = 1) -> None:
        self._add("error_before", op, times=times, status=503)

    async def restart(self, sink: ReportSink) -> Any:
        assert isinstance(self.pair.sink, Forwarder)
        self.pair.sink.target = sink
        return await self.pair.restart()
