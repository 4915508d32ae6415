"""Interactive Brokers: TWS or IB Gateway's socket API through ``ib_async``.

Importing this package is cheap: ``IBBroker`` (and with it ib_async, extra ``ib``) loads on first use, so the
registry can read ``SPEC`` in processes that never talk to IB. The local TWS venue is ``devstack.venues.ib``. See
``README.md`` beside this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.ib.config import IB_CAPABILITIES, IBSettings
from brokers.sessions import session_check_for

if TYPE_CHECKING:
    from brokers.ib.execution import IBBroker

__all__ = ["IB_CAPABILITIES", "SPEC", "IBBroker", "IBSettings"]


async def _build(ctx: BrokerContext) -> Broker:
    from brokers.ib.execution import IBBroker

    pool = ctx.require_pool("IB")
    return IBBroker.from_settings(ctx.settings, pool=pool, instruments=ctx.instruments, quotes=ctx.quotes)


SPEC = BrokerSpec(
    name="ib",
    capabilities=IB_CAPABILITIES,
    factory=_build,
    description="Interactive Brokers through TWS or IB Gateway (ib_async, settings section `ib`)",
    settings_section="ib",
    session_check=session_check_for("ib"),
    quotes=QuoteSource("ib", description="reqMktData snapshots from TWS/Gateway (quote_interval_ms)"),
    venue=LocalVenue(module="devstack.venues.ib"),
    extra="ib",
    libraries=("ib_async",),
)


def __getattr__(name: str) -> Any:
    if name == "IBBroker":
        from brokers.ib.execution import IBBroker

        return IBBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
