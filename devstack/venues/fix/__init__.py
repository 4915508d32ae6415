"""The local FIX venue: a QuickFIX acceptor in front of the paper matching engine (``venue.py``).

``python -m devstack.venues.fix`` runs it; ``EXODUS_FIX__LOCAL_VENUE=true make run`` starts it (``LAUNCH``) and lets
the worker own broker ``fix``. Importing this package is cheap: ``FixVenue`` (and ``quickfix``) loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.settings import Settings
from devstack.venues import Launch

if TYPE_CHECKING:
    from devstack.venues.fix.venue import FixVenue, FixVenueFaults

__all__ = ["LAUNCH", "FixVenue", "FixVenueFaults"]

_BANNER = """
  FIX            local venue {key} on port {port} (QuickFIX store and logs in {store}/); the worker owns
                 broker "fix" ({begin}). Route an order over FIX:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","clientOrderId":"fix-'$RANDOM'","symbol":"AAPL","side":"BUY","qty":100,"broker":"fix"}}'
"""


def _banner(settings: Settings, api: str) -> str:
    fx = settings.fix
    return _BANNER.format(
        key=f"{fx.target_comp_id}<-{fx.sender_comp_id}",
        port=fx.port,
        store=settings.data_dir.resolve() / "fix-venue",
        begin=fx.begin_string,
        api=api,
    )


LAUNCH = Launch(
    port=lambda settings: settings.fix.port,
    port_setting="EXODUS_FIX__PORT",
    banner=_banner,
    detail=lambda settings: settings.fix.begin_string,
)


def __getattr__(name: str) -> Any:
    if name in ("FixVenue", "FixVenueFaults"):
        from devstack.venues.fix import venue

        return getattr(venue, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
