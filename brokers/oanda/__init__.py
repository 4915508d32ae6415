"""OANDA broker: the v20 REST API (FX) and its transaction stream, over httpx.

Importing this package is cheap: ``OandaBroker`` (and with it httpx) loads on first use, so the registry can read
``SPEC`` in processes that never talk to OANDA. The local OANDA venue is ``devstack.venues.oanda``. See
``README.md`` beside this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.oanda.config import OANDA_CAPABILITIES, OandaSettings
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers.oanda.execution import OandaBroker

__all__ = ["OANDA_CAPABILITIES", "SPEC", "OandaBroker", "OandaSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.oanda.execution import OandaBroker

    pool = ctx.require_pool("OANDA")
    return OandaBroker.from_settings(ctx.settings, pool=pool, quotes=ctx.quotes, instruments=ctx.instruments)


SPEC = BrokerSpec(
    name="oanda",
    capabilities=OANDA_CAPABILITIES,
    factory=_build,
    description="OANDA v20 REST (FX), practice or live, and its transaction stream (settings section `oanda`)",
    settings_section="oanda",
    session_check=session_check_for("oanda"),
    quotes=QuoteSource("oanda", description="OANDA's prices (GET /v3/accounts/{id}/pricing)"),
    venue=LocalVenue(module="devstack.venues.oanda"),
    # httpx is in the base install: no extra.
    extra=None,
    libraries=(),
)


def __getattr__(name: str) -> Any:
    if name == "OandaBroker":
        from brokers.oanda.execution import OandaBroker

        return OandaBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
