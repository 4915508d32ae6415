"""The local TWS venue: the TWS API socket protocol in front of the paper matching engine.

``python -m devstack.venues.ib`` runs it (``venue.py``, ``wire.py``); ``EXODUS_IB__LOCAL_VENUE=true make run`` starts
it (``LAUNCH``), points the worker's adapter at it and registers account ``ib-1`` for it. Importing this package is
cheap: the venue itself loads in its own process.
"""

from __future__ import annotations

from core.settings import Settings
from devstack.venues import Launch

__all__ = ["LAUNCH", "LOCAL_ACCOUNT", "LOCAL_IB_ACCOUNT"]

#: The Exodus account ``make run`` registers for broker "ib" in development.
LOCAL_ACCOUNT = "ib-1"
#: The IB account the local venue manages (a paper account's "DU..." number).
LOCAL_IB_ACCOUNT = "DU1234567"

_BANNER = """
  IB             local TWS venue on 127.0.0.1:{port} (TWS API socket protocol, server version 178); the worker
                 owns broker "ib", account {account} is registered for it. Route an order to IB:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","account":"{account}","clientOrderId":"ib-'$RANDOM'",'\\
'"symbol":"AAPL","side":"BUY","qty":10,"broker":"ib"}}'
"""


def _env(settings: Settings) -> dict[str, str]:
    return {
        "EXODUS_IB__HOST": "127.0.0.1",
        "EXODUS_IB__PORT": str(settings.ib.local_venue_port),
        "EXODUS_IB__ACCOUNT": settings.ib.account or LOCAL_IB_ACCOUNT,
    }


def _banner(settings: Settings, api: str) -> str:
    return _BANNER.format(port=settings.ib.local_venue_port, account=LOCAL_ACCOUNT, api=api)


LAUNCH = Launch(
    port=lambda settings: settings.ib.local_venue_port,
    port_setting="EXODUS_IB__LOCAL_VENUE_PORT",
    env=_env,
    accounts=lambda settings: [(LOCAL_ACCOUNT, "quick-start account at the local TWS venue")],
    banner=_banner,
    detail=lambda settings: "TWS API",
)
