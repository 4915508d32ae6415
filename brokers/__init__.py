"""Broker adapters behind one ``Broker`` protocol, and the registry the worker builds them from.

Each adapter registers a ``BrokerSpec``: its capabilities (known without connecting, so the API and the
risk check can use them) and a factory that imports the adapter's library only when the broker is used.
Of the FIX and MT5 adapters, importing this module loads only their ``config`` modules (the paper venue is
in-process and loads whole); ``tests/brokers/test_imports.py`` checks it for MT5.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from brokers.alpaca.config import ALPACA_CAPABILITIES
from brokers.base import Broker, BrokerCapabilities, ReportSink, SessionCheck
from brokers.fix.config import FIX_CAPABILITIES
from brokers.mt5.config import MT5_CAPABILITIES
from brokers.paper.config import PAPER_CAPABILITIES
from brokers.sessions import session_check_for
from core.errors import ConfigError
from core.instruments import InstrumentCatalog
from core.marketdata import QuoteSink
from core.settings import Settings
from store import Pool

__all__ = [
    "BROKERS",
    "Broker",
    "BrokerCapabilities",
    "BrokerContext",
    "BrokerSpec",
    "ReportSink",
    "SessionCheck",
    "capabilities",
]


@dataclass(frozen=True)
class BrokerContext:
    """What a broker factory may use."""

    settings: Settings
    instruments: InstrumentCatalog
    pool: Pool | None
    #: Where the broker publishes the quotes it sees (None: nobody listens). The worker passes its
    #: ``QuoteWriter``, so whatever a broker publishes here reaches the quote store risk reads: the paper feed
    #: as source ``paper``, FIX market data as ``fix``; a REST adapter publishes its quote endpoint's answers
    #: here under its own name. (MT5 ticks arrive at the API's bridge endpoint and are stored there.)
    quotes: QuoteSink | None = None


@dataclass(frozen=True)
class BrokerSpec:
    """A broker the registry knows."""

    name: str
    capabilities: BrokerCapabilities
    factory: Callable[[BrokerContext], Awaitable[Broker]]
    description: str = ""
    #: Optional per-account availability check, run by the risk activity (which has a pool, not the session).
    session_check: SessionCheck | None = None


async def _paper(ctx: BrokerContext) -> Broker:
    from brokers.paper import PaperBroker
    from sim.journal import PostgresVenueJournal
    from sim.venue import SimVenue

    cfg = ctx.settings.paper
    journal = None
    if ctx.pool is not None:
        journal = PostgresVenueJournal(ctx.pool, ctx.settings.require_database_url(), venue="paper")
    venue = SimVenue(
        ctx.instruments,
        name="paper",
        seed=cfg.seed,
        tick_interval=cfg.tick_interval_ms / 1000,
        latency=cfg.latency_ms / 1000,
        reject_rate=cfg.reject_rate,
        reject_symbols=cfg.reject_symbols,
        journal=journal,
    )
    return PaperBroker(venue, quotes=ctx.quotes)


async def _fix(ctx: BrokerContext) -> Broker:
    from brokers.fix.execution import FixBroker

    if ctx.pool is None:
        raise ConfigError("the FIX broker keeps its orders and reports in Postgres: set DATABASE_URL")
    return FixBroker.from_settings(ctx.settings, pool=ctx.pool, quotes=ctx.quotes, instruments=ctx.instruments)


async def _mt5(ctx: BrokerContext) -> Broker:
    from brokers.mt5.execution import Mt5Broker

    if ctx.pool is None:
        raise ConfigError("the MT5 bridge keeps its command outbox in Postgres: it needs DATABASE_URL")
    cfg = ctx.settings.mt5
    executors = []
    if cfg.terminal is not None:
        # Windows only: a terminal beside the worker, driven through the MetaTrader5 package; it plays the EA.
        from brokers.mt5.bridge import Bridge
        from brokers.mt5.commands import CommandQueue
        from brokers.mt5.terminal import TerminalExecutor, load_metatrader5

        mt5 = load_metatrader5()
        bridge = Bridge(ctx.pool, cfg, instruments=ctx.instruments)
        executors.append(TerminalExecutor(mt5, bridge, CommandQueue(ctx.pool, cfg, instruments=ctx.instruments), cfg))
    return Mt5Broker(
        ctx.pool,
        cfg,
        database_url=ctx.settings.require_database_url(),
        instruments=ctx.instruments,
        executors=executors,
    )


async def _mt5_session_check(conn: AsyncConnection[Any], account: str) -> str | None:
    # Imported on first use, so that importing the registry does not load the bridge's modules.
    from brokers.mt5.session import session_check

    return await session_check(conn, account)


async def _alpaca(ctx: BrokerContext) -> Broker:
    from brokers.alpaca.execution import AlpacaBroker

    if ctx.pool is None:
        raise ConfigError("the Alpaca broker keeps its orders and reports in Postgres: set DATABASE_URL")
    return AlpacaBroker.from_settings(ctx.settings, pool=ctx.pool, quotes=ctx.quotes, instruments=ctx.instruments)


BROKERS: dict[str, BrokerSpec] = {
    "paper": BrokerSpec(
        name="paper",
        capabilities=PAPER_CAPABILITIES,
        factory=_paper,
        description="in-process simulated venue (default)",
    ),
    "fix": BrokerSpec(
        name="fix",
        capabilities=FIX_CAPABILITIES,
        factory=_fix,
        description="a FIX 4.2/4.4/5.0SP2 counterparty over QuickFIX (settings section `fix`)",
        session_check=session_check_for("fix"),
    ),
    "mt5": BrokerSpec(
        name="mt5",
        capabilities=MT5_CAPABILITIES,
        factory=_mt5,
        description="MetaTrader 5 (XM) through the ExodusBridge EA polling /api/v1/bridge/mt5",
        session_check=_mt5_session_check,
    ),
    "alpaca": BrokerSpec(
        name="alpaca",
        capabilities=ALPACA_CAPABILITIES,
        factory=_alpaca,
        description="Alpaca Trading API v2, paper or live, and its trade_updates stream (settings section `alpaca`)",
        session_check=session_check_for("alpaca"),
    ),
}


def capabilities() -> dict[str, BrokerCapabilities]:
    """Capabilities of every registered broker, by name."""
    return {name: spec.capabilities for name, spec in BROKERS.items()}
