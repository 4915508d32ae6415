"""How ``make run`` pairs the worker's Alpaca adapter with the local Alpaca venue (``EXODUS_ALPACA__LOCAL_VENUE``).

The venue and the worker get the same settings through the environment: the adapter's base URL and market data
URL point at the venue's port on 127.0.0.1, and both use the configured keys, or a fixed development pair when
none is configured (the local venue is loopback only and holds no money).
"""

from __future__ import annotations

from core.settings import Settings

__all__ = ["LOCAL_ACCOUNT", "LOCAL_KEYS", "local_venue_env"]

#: The development key pair of the local venue when no keys are configured.
LOCAL_KEYS = ("exodus-local", "exodus-local-secret")
#: The account ``make run`` registers for broker "alpaca" in development.
LOCAL_ACCOUNT = "alpaca-1"


def local_venue_env(settings: Settings) -> dict[str, str]:
    """The ``EXODUS_ALPACA__*`` environment of the venue and the worker: URLs of the local venue, the keys."""
    cfg = settings.alpaca
    url = f"http://127.0.0.1:{cfg.local_venue_port}"
    key_id = cfg.key_id.get_secret_value() if cfg.key_id else LOCAL_KEYS[0]
    secret = cfg.secret_key.get_secret_value() if cfg.secret_key else LOCAL_KEYS[1]
    return {
        "EXODUS_ALPACA__BASE_URL": url,
        "EXODUS_ALPACA__DATA_URL": url,
        "EXODUS_ALPACA__STREAM_URL": f"ws://127.0.0.1:{cfg.local_venue_port}/stream",
        "EXODUS_ALPACA__KEY_ID": key_id,
        "EXODUS_ALPACA__SECRET_KEY": secret,
    }
