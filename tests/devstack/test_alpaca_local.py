"""``make run`` with EXODUS_ALPACA__LOCAL_VENUE pairs the worker's adapter with the local venue."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.settings import AlpacaSettings, Settings
from devstack.venues.alpaca.local import LOCAL_KEYS, local_venue_env


def test_local_venue_env_points_the_adapter_at_the_venue_with_the_development_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = local_venue_env(Settings(alpaca=AlpacaSettings(local_venue=True, local_venue_port=8891)))
    assert env["EXODUS_ALPACA__BASE_URL"] == env["EXODUS_ALPACA__DATA_URL"] == "http://127.0.0.1:8891"
    assert (env["EXODUS_ALPACA__KEY_ID"], env["EXODUS_ALPACA__SECRET_KEY"]) == LOCAL_KEYS
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    worker = Settings().alpaca  # what the worker reads from that environment
    assert worker.resolved_stream_url() == "ws://127.0.0.1:8891/stream"
    assert worker.key_id is not None and worker.key_id.get_secret_value() == LOCAL_KEYS[0]


def test_configured_keys_are_kept_and_stream_urls_derive_from_the_base_url() -> None:
    cfg = AlpacaSettings(key_id=SecretStr("PKREAL"), secret_key=SecretStr("s"))
    env = local_venue_env(Settings(alpaca=cfg))
    assert (env["EXODUS_ALPACA__KEY_ID"], env["EXODUS_ALPACA__SECRET_KEY"]) == ("PKREAL", "s")
    assert cfg.resolved_stream_url() == "wss://paper-api.alpaca.markets/stream"
    live = AlpacaSettings(base_url="https://api.alpaca.markets/")
    assert live.resolved_stream_url() == "wss://api.alpaca.markets/stream"
    assert "PKREAL" not in repr(cfg)  # keys are secrets
