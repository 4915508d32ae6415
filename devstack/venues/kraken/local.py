"""How ``make run`` pairs the worker's Kraken adapter with the local Kraken venue (``EXODUS_KRAKEN__LOCAL_VENUE``).

The venue and the worker get the same settings through the environment: the adapter's base URL points at the
venue's port on 127.0.0.1, and both use the configured key, or a fixed development pair when none is configured
(the local venue is loopback only and holds no money).
"""

from __future__ import annotations

import base64

from core.settings import Settings

__all__ = ["LOCAL_ACCOUNT", "LOCAL_KEYS", "local_venue_env"]

#: The development key and (base64) secret of the local venue when none are configured.
LOCAL_KEYS = ("exodus-local-kraken", base64.b64encode(b"exodus-local-kraken-secret-not-for-money").decode())
#: The account ``make run`` registers for broker "kraken" in development.
LOCAL_ACCOUNT = "kraken-1"


def local_venue_env(settings: Settings) -> dict[str, str]:
    """The ``EXODUS_KRAKEN__*`` environment of the venue and the worker: the venue's URL and the key."""
    cfg = settings.kraken
    key = cfg.api_key.get_secret_value() if cfg.api_key else LOCAL_KEYS[0]
    secret = cfg.api_secret.get_secret_value() if cfg.api_secret else LOCAL_KEYS[1]
    return {
        "EXODUS_KRAKEN__BASE_URL": f"http://127.0.0.1:{cfg.local_venue_port}",
        "EXODUS_KRAKEN__API_KEY": key,
        "EXODUS_KRAKEN__API_SECRET": secret,
        # The local venue keeps no call counter unless started with --rate-limit.
        "EXODUS_KRAKEN__CALL_COUNTER_LIMIT": "100",
        "EXODUS_KRAKEN__CALL_COUNTER_DECAY": "20",
    }
