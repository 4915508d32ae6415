"""Kraken broker: Kraken's spot REST API (signed with API-Key/API-Sign), over httpx.

Importing this package is cheap: ``KrakenBroker`` (and with it httpx) loads on first use, so the registry can read
``SPEC`` in processes that never talk to Kraken. The local Kraken venue is ``devstack.venues.kraken``. See
``README.md`` beside this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.kraken.config import KRAKEN_CAPABILITIES, KrakenSettings
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers.kraken.execution import KrakenBroker

__all__ = ["KRAKEN_CAPABILITIES", "SPEC", "KrakenBroker", "KrakenSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.kraken.execution import KrakenBroker

    pool = ctx.require_pool("Kraken")
    return KrakenBroker.from_settings(ctx.settings, pool=pool, quotes=ctx.quotes, instruments=ctx.instruments)


SPEC = BrokerSpec(
    name="kraken",
    capabilities=KRAKEN_CAPABILITIES,
    factory=_build,
    description="Kraken spot REST (AddOrder, AmendOrder, CancelOrder; fills polled) (settings section `kraken`)",
    settings_section="kraken",
    session_check=session_check_for("kraken"),
    quotes=QuoteSource("kraken", description="Kraken's tickers (GET /0/public/Ticker)"),
    venue=LocalVenue(module="devstack.venues.kraken"),
    # httpx is in the base install: nothing more to install.
    extra=None,
    libraries=(),
)


def __getattr__(name: str) -> Any:
    if name == "KrakenBroker":
        from brokers.kraken.execution import KrakenBroker

        return KrakenBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
