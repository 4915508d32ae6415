"""MetaTrader 5 bridge: the ExodusBridge EA (``mql5/``) polls commands over HTTP; see ``protocol.py``.

The package splits by role: ``bridge.py`` serves the EA (the API's bridge routes), ``commands.py`` is the command
queue, ``reconcile.py`` compares the terminal with the ledger, ``session.py`` answers the risk check's "is the
terminal connected", ``reports.py`` derives and journals execution reports, and ``execution.py`` is the worker's
``Mt5Broker``. ``tables.py`` holds the SQL of the bridge's tables, ``rows.py`` their rows.

Importing this package is cheap: only ``config.py`` (the capabilities the registry reads) loads with it;
``Mt5Broker`` loads on first use, and the session check on its first call, so the API and processes that never own
the broker do not load the worker's side. ``SPEC`` is what the registry knows of it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from brokers.base import Broker, BrokerContext, BrokerSpec, QuoteSource
from brokers.mt5.config import MT5_CAPABILITIES

if TYPE_CHECKING:
    from brokers.mt5.execution import Mt5Broker

__all__ = ["MT5_CAPABILITIES", "SPEC", "Mt5Broker"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.mt5.execution import Mt5Broker

    pool = ctx.require_pool("MT5")
    cfg = ctx.settings.mt5
    executors = []
    if cfg.terminal is not None:
        # Windows only: a terminal beside the worker, driven through the MetaTrader5 package; it plays the EA.
        from brokers.mt5.bridge import Bridge
        from brokers.mt5.commands import CommandQueue
        from brokers.mt5.terminal import TerminalExecutor, load_metatrader5

        mt5 = load_metatrader5()
        bridge = Bridge(pool, cfg, instruments=ctx.instruments)
        executors.append(TerminalExecutor(mt5, bridge, CommandQueue(pool, cfg, instruments=ctx.instruments), cfg))
    return Mt5Broker(
        pool,
        cfg,
        database_url=ctx.settings.require_database_url(),
        instruments=ctx.instruments,
        executors=executors,
    )


async def _session_check(conn: AsyncConnection[Any], account: str) -> str | None:
    # Imported on first use, so that importing the registry does not load the bridge's modules.
    from brokers.mt5.session import session_check

    return await session_check(conn, account)


SPEC = BrokerSpec(
    name="mt5",
    capabilities=MT5_CAPABILITIES,
    factory=_build,
    description="MetaTrader 5 (XM) through the ExodusBridge EA polling /api/v1/bridge/mt5",
    settings_section="mt5",
    session_check=_session_check,
    quotes=QuoteSource("mt5", description="the EA's ticks, posted to the API's bridge endpoint"),
    # The MetaTrader5 package drives a terminal beside a Windows worker (EXODUS_MT5__TERMINAL); elsewhere nothing.
    extra="mt5",
    libraries=("MetaTrader5",) if sys.platform == "win32" else (),
)


def __getattr__(name: str) -> Any:
    if name == "Mt5Broker":
        from brokers.mt5.execution import Mt5Broker

        return Mt5Broker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
