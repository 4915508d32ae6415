"""The local Alpaca venue: Alpaca's Trading API v2 and ``trade_updates`` in front of the paper matching engine.

``python -m devstack.venues.alpaca`` runs it (``venue.py``, ``model.py``); ``EXODUS_ALPACA__LOCAL_VENUE=true make run``
starts it (``LAUNCH``), points the worker's adapter at it (``local.py``) and registers account ``alpaca-1`` for it.
Importing this package is cheap: the venue itself loads in its own process.
"""

from __future__ import annotations

from core.settings import Settings
from devstack.venues import Launch
from devstack.venues.alpaca.local import LOCAL_ACCOUNT, local_venue_env

__all__ = ["LAUNCH"]

_BANNER = """
  Alpaca         local venue on http://127.0.0.1:{port} (Trading API v2, trade_updates on /stream); the worker
                 owns broker "alpaca", account {account} is registered for it. Route an order to Alpaca:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","account":"{account}","clientOrderId":"alpaca-'$RANDOM'",'\\
'"symbol":"AAPL","side":"BUY","qty":10,"broker":"alpaca"}}'
"""


def _banner(settings: Settings, api: str) -> str:
    return _BANNER.format(port=settings.alpaca.local_venue_port, account=LOCAL_ACCOUNT, api=api)


LAUNCH = Launch(
    port=lambda settings: settings.alpaca.local_venue_port,
    port_setting="EXODUS_ALPACA__LOCAL_VENUE_PORT",
    env=local_venue_env,
    accounts=lambda settings: [(LOCAL_ACCOUNT, "quick-start account at the local Alpaca venue")],
    banner=_banner,
)
