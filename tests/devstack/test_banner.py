"""`make run`'s banner says loudly when the API runs without authentication (issue 9)."""

from __future__ import annotations

from core.settings import AuthSettings, Settings, TemporalSettings
from devstack.__main__ import _auth_banner


def test_the_banner_says_loudly_that_auth_is_off_and_what_turns_it_on() -> None:
    off = _auth_banner(Settings(_env_file=None).identity_sources(), registered=True)  # type: ignore[call-arg]
    assert "!!! DISABLED" in off and "X-Exodus-Auth: disabled" in off and "127.0.0.1 only" in off
    assert "EXODUS_AUTH__API_KEYS=true" in off and "python -m api.keys create" in off
    assert "desk-1, desk-2 registered" in off


def test_the_banner_names_the_identity_sources_when_auth_is_on() -> None:
    settings = Settings(_env_file=None, auth=AuthSettings(api_keys=True))  # type: ignore[call-arg]
    on = _auth_banner(settings.identity_sources(), registered=False)
    assert "DISABLED" not in on and "api-keys" in on and "Authorization: Bearer" in on
    assert "registered" not in on


def test_the_ui_links_follow_the_dev_servers_ui_port_unless_a_url_is_given() -> None:
    # `make run` on other ports (EXODUS_TEMPORAL__UI_PORT) prints, and the API returns, links to that port.
    assert TemporalSettings().ui_url == "http://localhost:8233"
    assert TemporalSettings(ui_port=18233).ui_url == "http://localhost:18233"
    assert (
        TemporalSettings(ui_port=18233, ui_url="https://temporal.example.com").ui_url == "https://temporal.example.com"
    )
    settings = Settings(_env_file=None, temporal={"ui_port": 18234})  # type: ignore[call-arg]
    assert settings.temporal.ui_url == "http://localhost:18234"
