"""FIX broker: a QuickFIX initiator session (FIX 4.2, 4.4, 5.0 SP2) behind the ``Broker`` protocol.

Importing this package is cheap: ``FixBroker`` (and with it the ``quickfix`` extension, extra ``fix``) loads on
first use, so the registry can read ``SPEC`` in processes that never open a session. The local FIX venue is
``devstack.venues.fix``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.fix.config import FIX_CAPABILITIES, FixSettings
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers.fix.execution import FixBroker

__all__ = ["FIX_CAPABILITIES", "SPEC", "FixBroker", "FixSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.fix.execution import FixBroker

    pool = ctx.require_pool("FIX")
    return FixBroker.from_settings(ctx.settings, pool=pool, quotes=ctx.quotes, instruments=ctx.instruments)


SPEC = BrokerSpec(
    name="fix",
    capabilities=FIX_CAPABILITIES,
    factory=_build,
    description="a FIX 4.2/4.4/5.0SP2 counterparty over QuickFIX (settings section `fix`)",
    settings_section="fix",
    session_check=session_check_for("fix"),
    quotes=QuoteSource("fix", description="the session's MarketDataRequest subscription (EXODUS_FIX__MARKET_DATA)"),
    venue=LocalVenue(module="devstack.venues.fix"),
    extra="fix",
    libraries=("quickfix",),
)


def __getattr__(name: str) -> Any:
    if name == "FixBroker":
        from brokers.fix.execution import FixBroker

        return FixBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
