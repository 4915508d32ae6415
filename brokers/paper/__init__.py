"""Paper broker: the in-process simulated venue (the default broker).

``SPEC`` is what the registry knows of it. Its local venue is the simulated venue itself, built in the worker by
the spec's venue hook (``_paper_venue``: the only place ``brokers/`` reaches ``sim/``).
"""

from __future__ import annotations

from typing import Any

from brokers.base import Broker, BrokerContext, BrokerSpec, LocalVenue, QuoteSource
from brokers.paper.config import PAPER_CAPABILITIES
from brokers.paper.execution import PaperBroker

__all__ = ["PAPER_CAPABILITIES", "SPEC", "PaperBroker"]


async def _paper_venue(ctx: BrokerContext) -> Any:
    """The simulated venue, journaled in Postgres when there is one (``sim_*`` tables, venue key ``paper``).

    Its market never closes: its session is the trading day that ends at ``orders.day_close_utc`` (where DAY
    orders expire), and the next one starts at that instant. So OPG and CLS orders both trade at the first
    feed step at or after the next day close, OPG as the new session's opening auction, CLS as the old one's
    closing auction.
    """
    from sim.journal import PostgresVenueJournal
    from sim.matching import Auctions
    from sim.venue import SimVenue

    cfg = ctx.settings.paper
    journal = None
    if ctx.pool is not None:
        journal = PostgresVenueJournal(ctx.pool, ctx.settings.require_database_url(), venue="paper")
    return SimVenue(
        ctx.instruments,
        name="paper",
        seed=cfg.seed,
        tick_interval=cfg.tick_interval_ms / 1000,
        latency=cfg.latency_ms / 1000,
        reject_rate=cfg.reject_rate,
        reject_symbols=cfg.reject_symbols,
        journal=journal,
        auctions=Auctions(open=ctx.settings.orders.day_close_utc, close=ctx.settings.orders.day_close_utc),
    )


async def _build(ctx: BrokerContext) -> Broker:
    assert SPEC.venue is not None and SPEC.venue.in_process is not None
    return PaperBroker(await SPEC.venue.in_process(ctx), quotes=ctx.quotes)


SPEC = BrokerSpec(
    name="paper",
    capabilities=PAPER_CAPABILITIES,
    factory=_build,
    description="in-process simulated venue (default)",
    settings_section="paper",
    quotes=QuoteSource("paper", simulated=True, description="the simulated venue's price feed"),
    venue=LocalVenue(in_process=_paper_venue),
)
