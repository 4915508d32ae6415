"""The ``Broker`` protocol every adapter implements, and what each method must do.

=====================  ========  =================================================================
method                 required  contract
=====================  ========  =================================================================
``start(sink)``        yes       connect; from now on push every execution report to ``sink``
``close()``            yes       disconnect; idempotent
``submit_order``       yes       send a new order under ``cl_ord_id``; a definite refusal is
                                 ``BrokerAck(accepted=False)``; an unknown outcome (timeout,
                                 disconnect, 5xx, 429) raises ``BrokerUnavailable``
``cancel_order``       yes       ask to cancel; ``not_found=True`` when the broker never had it;
                                 "too late" is ``accepted=False`` with the reason
``replace_order``      optional  change qty/price (cancel/replace); raise ``BrokerRejected`` if unsupported
``get_order_status``   yes       the broker's view of one order (with its fills) or ``None`` if unknown;
                                 retried submissions call this first, so it must be authoritative
``open_orders``        yes       every order the broker still works for us (resync after reconnect; with
                                 ``capabilities.mass_status`` also the broker sweep's one request)
``fills_since``        optional  fills after a time, for end-of-day reconciliation (declare
                                 ``capabilities.reports_fills``)
``positions``          optional  the broker's positions, for end-of-day reconciliation (declare
                                 ``capabilities.reports_positions``)
=====================  ========  =================================================================

Execution reports pushed to the sink must carry a broker-unique ``exec_id``; the same report may be
pushed more than once (the order workflow deduplicates). Adapters convert library errors at one boundary
into the ``core.errors`` tree; the failures of their own records (Postgres) at the one shared storage
boundary, ``storage_boundary`` (every call of the protocol) or ``storage_errors`` (a block).

Each adapter's package exports a ``BrokerSpec`` as ``SPEC``: what the registry (``brokers/__init__.py``) knows
of the broker without loading its library: capabilities, how to build the adapter from the settings (the
factory imports the library), the session check risk asks, where its quotes come from, its local venue and
its settings section. ``brokers/_template/`` is the one to copy; ``brokers/README.md`` says how.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar, runtime_checkable

import psycopg
from psycopg import AsyncConnection
from pydantic import BaseModel, ConfigDict

from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderStatusReport,
    OrderType,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
    TimeInForce,
)
from core.errors import BrokerUnavailable, ConfigError
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import Settings
from store import Pool

__all__ = [
    "BROKER_CALLS",
    "STORAGE_ERRORS",
    "Broker",
    "BrokerCapabilities",
    "BrokerContext",
    "BrokerSpec",
    "LocalVenue",
    "QuoteSource",
    "ReportSink",
    "SessionCheck",
    "storage_boundary",
    "storage_errors",
]

#: Where a broker pushes execution reports (the worker wires it to the order workflows' signal).
ReportSink = Callable[[ExecutionReport], Awaitable[None]]

#: Answers "can this broker take a new order for this account right now?": None when it can, else the reason
#: (for example "the MT5 terminal of account 1234 has not sent a heartbeat for 45 s"). The risk check
#: refuses new orders with that reason; orders already working are not affected. It is called with the risk
#: decision's own connection (inside its transaction, possibly in pipeline mode): it must not take another.
SessionCheck = Callable[[AsyncConnection[Any], str], Awaitable[str | None]]


class BrokerCapabilities(BaseModel):
    """What a broker supports; the risk check refuses orders outside it.

    Unknown fields are refused: a capability under a name it no longer has (``dedupes_client_order_id``, now
    ``dedupes_cl_ord_id``) fails where the adapter declares it instead of silently keeping the default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_types: frozenset[OrderType]
    time_in_force: frozenset[TimeInForce]
    supports_replace: bool = True
    #: A replace may change the quantity of a working order (MT5 changes prices and expiry only).
    replace_changes_qty: bool = True
    #: A limit order priced through the market is taken and executes at once (MT5 refuses a buy limit above the
    #: ask: it is a pending order, and must rest).
    marketable_limits: bool = True
    #: The broker deduplicates ``cl_ord_id`` itself (a resend with the same id cannot create a twin).
    dedupes_cl_ord_id: bool = False
    #: The broker answers requests beyond a rate with a throttle (HTTP 429) that the adapter must wait out and
    #: retry, never report as a refusal (REST brokers).
    rate_limited: bool = False
    #: ``positions()`` is the broker's own account of positions (end-of-day reconciliation compares it with the
    #: ledger). False (the default, safe for an adapter that cannot): positions are not compared, and the
    #: reconciliation report says so.
    reports_positions: bool = False
    #: ``fills_since()`` lists every fill the broker made for Exodus' orders after a time (compared with the
    #: ledger's fills of the day). False (the default): fills are not compared.
    reports_fills: bool = False
    #: The broker has one account per connection (an API key or token): ``positions()`` reports that account's
    #: positions, which end-of-day reconciliation compares with the sum over every Exodus account routed to the
    #: broker. False: positions are per account, the broker's own account ids matched to Exodus accounts through the
    #: accounts registry's ``broker_account`` (an account not registered with one is compared by its name).
    one_account: bool = False
    #: The order lists the broker carries itself (``core.contingency.Contingency`` values: ``BRACKET``, ``OCO``,
    #: ``OTO``): such a list is sent as one request and the broker's legs are followed (``core.nativelist``); every
    #: other list, and a list whose shape the broker cannot carry, is emulated by the coordinator. Empty: all
    #: emulated.
    native_lists: frozenset[str] = frozenset()
    #: ``open_orders()`` lists every order the broker still works for Exodus in one request (or a few pages): the
    #: broker's mass status. The worker owning the session then sweeps it (``worker/sweep.py``): once per
    #: ``EXODUS_ORDERS__SWEEP_SECONDS`` it compares that list with the orders Postgres says are working and signals
    #: only those that differ, and its orders arm no status-poll timer of their own. False (the default): each
    #: working order polls the broker on its own timer (``status_poll_seconds``).
    mass_status: bool = False

    @property
    def takes(self) -> frozenset[OrderType]:
        """The order types an order for this broker may have: its own, and those Exodus emulates on top of them.

        A trailing stop is native where ``order_types`` has ``TRAILING_STOP`` (no adapter routes one natively
        yet), else emulated by the order workflow (``core.trailing``), which sends a MARKET order when it triggers.
        """
        if OrderType.MARKET in self.order_types:
            return self.order_types | {OrderType.TRAILING_STOP}
        return self.order_types

    @property
    def native_trailing_stop(self) -> bool:
        """The broker takes trailing stops itself (else the order workflow emulates them)."""
        return OrderType.TRAILING_STOP in self.order_types


@runtime_checkable
class Broker(Protocol):
    """A connection to one broker or venue."""

    name: str
    capabilities: BrokerCapabilities

    async def start(self, sink: ReportSink) -> None:
        """Connect and start pushing execution reports to ``sink``."""
        ...

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        ...

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Send a new order."""
        ...

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Ask the broker to cancel an order."""
        ...

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Change an order's quantity or prices."""
        ...

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The broker's view of an order and its fills, or None when the broker does not know it."""
        ...

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every order the broker still works for us."""
        ...

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        ...

    async def positions(self) -> list[PositionReport]:
        """The broker's positions."""
        ...


# ------------------------------------------------------------------------------------------------ storage


#: What an adapter's own records fail with: psycopg's errors (its pool's timeouts included) and the socket's.
STORAGE_ERRORS: Final = (psycopg.Error, OSError)

#: The ``Broker`` calls ``storage_boundary`` guards (every call that may touch the adapter's records).
BROKER_CALLS: Final = (
    "start",
    "submit_order",
    "cancel_order",
    "replace_order",
    "get_order_status",
    "open_orders",
    "fills_since",
    "positions",
)

_T = TypeVar("_T")


@contextlib.asynccontextmanager
async def storage_errors(broker: str) -> AsyncIterator[None]:
    """The storage-error boundary every adapter shares: a failure of its records is ``BrokerUnavailable``.

    An adapter's records (its report journal, its orders) live in Postgres. When Postgres fails in the middle of a
    call, the call's outcome is unknown, never refused: the activity retries it after asking the broker for the
    order's status. ``storage_boundary`` applies this to every ``Broker`` call of an adapter class.
    """
    try:
        yield
    except STORAGE_ERRORS as e:
        raise BrokerUnavailable(f"{broker}: storage failed, the outcome is unknown; was {e!r}") from e


def storage_boundary(cls: type[_T]) -> type[_T]:
    """Class decorator: every ``Broker`` call the class defines (``BROKER_CALLS``) runs inside ``storage_errors``.

    The adapter's ``name`` attribute names the broker in the error. Calls the class does not define are left alone.
    """
    for attr in BROKER_CALLS:
        method = cls.__dict__.get(attr)
        if method is None:
            continue
        setattr(cls, attr, _guarded(method))
    return cls


def _guarded(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        async with storage_errors(getattr(self, "name", type(self).__name__)):
            return await method(self, *args, **kwargs)

    call.__storage_boundary__ = True  # type: ignore[attr-defined]
    return call


# ------------------------------------------------------------------------------------------------ the spec


@dataclass(frozen=True)
class BrokerContext:
    """What a broker factory may use."""

    settings: Settings
    instruments: InstrumentCatalog
    pool: Pool | None
    #: Where the broker publishes the quotes it sees (None: nobody listens). The worker passes its
    #: ``QuoteWriter``, so whatever a broker publishes here reaches the quote store risk reads, under the source
    #: its spec's ``quotes`` names. (MT5 ticks arrive at the API's bridge endpoint and are stored there.)
    quotes: QuoteSink | None = None

    def require_pool(self, broker: str) -> Pool:
        """The pool, or a ``ConfigError``: the adapter keeps its orders and reports in Postgres."""
        if self.pool is None:
            raise ConfigError(f"the {broker} broker keeps its orders and reports in Postgres: set DATABASE_URL")
        return self.pool


@dataclass(frozen=True)
class QuoteSource:
    """Where a broker's reference prices come from: the market data source its quotes are stored under."""

    #: The ``source`` of its quotes in the quote store (``market_quotes``); risk prices the broker's orders with it.
    source: str
    #: Simulated prices price only simulated brokers' orders (``core.marketdata.SIMULATED_SOURCES``).
    simulated: bool = False
    #: Who publishes them, for people.
    description: str = ""


@dataclass(frozen=True)
class LocalVenue:
    """The broker's local venue: a counterpart speaking its real wire protocol in front of the paper matching engine.

    Exactly one of the two: ``module``, a package above ``brokers/`` (``devstack.venues.<name>``) that runs as
    ``python -m <module>`` and exports ``LAUNCH`` (how ``make run`` starts it when the broker's settings section
    says ``local_venue=true``, and pairs the worker with it); or ``in_process``, which builds the venue inside the
    worker (the paper broker: the matching engine itself). This is the only way ``brokers/`` reaches ``sim/``.
    """

    module: str | None = None
    in_process: Callable[[BrokerContext], Any] | None = None

    def __post_init__(self) -> None:
        if (self.module is None) == (self.in_process is None):
            raise ValueError("a local venue is either a module to run or built in process, not both or neither")


@dataclass(frozen=True)
class BrokerSpec:
    """A broker the registry knows: everything about it that can be known without loading its library."""

    name: str
    capabilities: BrokerCapabilities
    #: Builds the adapter (not started) from the settings; imports the adapter's library only now.
    factory: Callable[[BrokerContext], Awaitable[Broker]]
    description: str = ""
    #: The attribute of ``Settings`` holding the broker's settings (``EXODUS_<SECTION>__...``); None: it has none.
    settings_section: str | None = None
    #: Optional per-account availability check, run by the risk activity (which has a pool, not the session).
    session_check: SessionCheck | None = None
    #: Where its reference prices come from (None: it publishes none; configure another source per instrument).
    quotes: QuoteSource | None = None
    #: Its local venue, for ``make run`` and the tests (None: it has none yet).
    venue: LocalVenue | None = None
    #: The pip extra holding its libraries (``pip install -e '.[fix]'``); ``make run`` installs it only when the
    #: broker is configured, ``make test`` always. None: it needs nothing beyond the base install.
    extra: str | None = None
    #: The top-level modules that extra provides (how ``make run`` tells whether it is installed).
    libraries: tuple[str, ...] = ()

    def settings_of(self, settings: Settings) -> BaseModel | None:
        """The broker's settings section (None when it has none)."""
        if self.settings_section is None:
            return None
        section = getattr(settings, self.settings_section)
        assert isinstance(section, BaseModel)
        return section

    def missing_libraries(self) -> list[str]:
        """Its libraries that are not installed (install the extra ``extra``)."""
        return [lib for lib in self.libraries if importlib.util.find_spec(lib) is None]

    def require_libraries(self) -> None:
        """A ``ConfigError`` naming the extra to install when its libraries are missing."""
        missing = self.missing_libraries()
        if missing:
            raise ConfigError(
                f"broker {self.name!r} needs {', '.join(missing)}: pip install -e '.[{self.extra}]' "
                "(make run installs the extras of the brokers it runs, make test all of them)"
            )

    def local_venue_wanted(self, settings: Settings) -> bool:
        """Whether ``make run`` should start the broker's local venue (its section says ``local_venue=true``)."""
        section = self.settings_of(settings)
        return bool(self.venue and self.venue.module and getattr(section, "local_venue", False))
