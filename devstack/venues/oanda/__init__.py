"""The local OANDA venue: OANDA's v20 REST API and transaction stream in front of the paper matching engine.

``python -m devstack.venues.oanda`` runs it (``venue.py``, ``model.py``); ``EXODUS_OANDA__LOCAL_VENUE=true make run``
starts it (``LAUNCH``), points the worker's adapter at it (``local.py``) and registers account ``oanda-1`` for it.
Importing this package is cheap: the venue itself loads in its own process.
"""

from __future__ import annotations

from core.settings import Settings
from devstack.venues import Launch
from devstack.venues.oanda.local import LOCAL_ACCOUNT, local_venue_env

__all__ = ["LAUNCH"]

_BANNER = """
  OANDA          local venue on http://127.0.0.1:{port} (v20 REST and the transaction stream); the worker owns
                 broker "oanda", account {account} is registered for it. Route an order to OANDA:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","account":"{account}","clientOrderId":"oanda-'$RANDOM'",'\\
'"symbol":"EURUSD","side":"BUY","qty":10000,"type":"MARKET","timeInForce":"IOC","broker":"oanda"}}'
"""


def _banner(settings: Settings, api: str) -> str:
    return _BANNER.format(port=settings.oanda.local_venue_port, account=LOCAL_ACCOUNT, api=api)


LAUNCH = Launch(
    port=lambda settings: settings.oanda.local_venue_port,
    port_setting="EXODUS_OANDA__LOCAL_VENUE_PORT",
    env=local_venue_env,
    accounts=lambda settings: [(LOCAL_ACCOUNT, "quick-start account at the local OANDA venue")],
    banner=_banner,
    detail=lambda settings: "v20",
)
