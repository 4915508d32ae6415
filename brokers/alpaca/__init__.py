"""Alpaca broker: the Trading API v2 (REST) and its ``trade_updates`` stream, over httpx and websockets.

Importing this package is cheap: ``AlpacaBroker`` (and with it httpx and websockets, extra ``alpaca``) loads on
first use, so the registry can read ``SPEC`` in processes that never talk to Alpaca. The local Alpaca venue is
``devstack.venues.alpaca``. See ``README.md`` beside this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.alpaca.config import ALPACA_CAPABILITIES, AlpacaSettings
from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers.alpaca.execution import AlpacaBroker

__all__ = ["ALPACA_CAPABILITIES", "SPEC", "AlpacaBroker", "AlpacaSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.alpaca.execution import AlpacaBroker

    pool = ctx.require_pool("Alpaca")
    return AlpacaBroker.from_settings(ctx.settings, pool=pool, quotes=ctx.quotes, instruments=ctx.instruments)


SPEC = BrokerSpec(
    name="alpaca",
    capabilities=ALPACA_CAPABILITIES,
    factory=_build,
    description="Alpaca Trading API v2, paper or live, and its trade_updates stream (settings section `alpaca`)",
    settings_section="alpaca",
    session_check=session_check_for("alpaca"),
    quotes=QuoteSource("alpaca", description="Alpaca's latest quotes (GET /v2/stocks/quotes/latest)"),
    venue=LocalVenue(module="devstack.venues.alpaca"),
    extra="alpaca",
    libraries=("websockets",),
)


def __getattr__(name: str) -> Any:
    if name == "AlpacaBroker":
        from brokers.alpaca.execution import AlpacaBroker

        return AlpacaBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
