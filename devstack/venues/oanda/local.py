"""How ``make run`` pairs the worker's OANDA adapter with the local OANDA venue (``EXODUS_OANDA__LOCAL_VENUE``).

The venue and the worker get the same settings through the environment: the adapter's REST and stream URLs point
at the venue's port on 127.0.0.1, and both use the configured token and account, or a fixed development pair when
none is configured (the local venue is loopback only and holds no money).
"""

from __future__ import annotations

from core.settings import Settings

__all__ = ["LOCAL_ACCOUNT", "LOCAL_OANDA_ACCOUNT", "LOCAL_TOKEN", "local_venue_env"]

#: The development token and v20 account id of the local venue when none are configured.
LOCAL_TOKEN = "exodus-local-oanda-token"
LOCAL_OANDA_ACCOUNT = "101-001-0000000-001"
#: The Exodus account ``make run`` registers for broker "oanda" in development.
LOCAL_ACCOUNT = "oanda-1"


def local_venue_env(settings: Settings) -> dict[str, str]:
    """The ``EXODUS_OANDA__*`` environment of the venue and the worker: URLs of the local venue, token, account."""
    cfg = settings.oanda
    url = f"http://127.0.0.1:{cfg.local_venue_port}"
    return {
        "EXODUS_OANDA__BASE_URL": url,
        "EXODUS_OANDA__STREAM_URL": url,
        "EXODUS_OANDA__TOKEN": cfg.token.get_secret_value() if cfg.token else LOCAL_TOKEN,
        "EXODUS_OANDA__ACCOUNT_ID": cfg.account_id or LOCAL_OANDA_ACCOUNT,
    }
