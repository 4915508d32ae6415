"""The local Kraken venue: Kraken's spot REST API in front of the paper matching engine.

``python -m devstack.venues.kraken`` runs it (``venue.py``, ``model.py``); ``EXODUS_KRAKEN__LOCAL_VENUE=true make
run`` starts it (``LAUNCH``), points the worker's adapter at it (``local.py``) and registers account ``kraken-1``
for it. Importing this package is cheap: the venue itself loads in its own process.
"""

from __future__ import annotations

from core.settings import Settings
from devstack.venues import Launch
from devstack.venues.kraken.local import LOCAL_ACCOUNT, local_venue_env

__all__ = ["LAUNCH"]

_BANNER = """
  Kraken         local venue on http://127.0.0.1:{port} (spot REST: AddOrder, AmendOrder, CancelOrder, OpenOrders,
                 ClosedOrders, TradesHistory, Balance, Ticker); the worker owns broker "kraken", account {account}
                 is registered for it. Route an order to Kraken:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","account":"{account}","clientOrderId":"kraken-'$RANDOM'",'\\
'"symbol":"BTC-USD","side":"BUY","qty":0.01,"timeInForce":"GTC","broker":"kraken"}}'
"""


def _banner(settings: Settings, api: str) -> str:
    return _BANNER.format(port=settings.kraken.local_venue_port, account=LOCAL_ACCOUNT, api=api)


LAUNCH = Launch(
    port=lambda settings: settings.kraken.local_venue_port,
    port_setting="EXODUS_KRAKEN__LOCAL_VENUE_PORT",
    env=local_venue_env,
    accounts=lambda settings: [(LOCAL_ACCOUNT, "quick-start account at the local Kraken venue")],
    banner=_banner,
)
