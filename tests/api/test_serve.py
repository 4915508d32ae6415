"""``python -m api`` hands uvicorn the configured server settings."""

from __future__ import annotations

from typing import Any

import pytest

import api.__main__ as serve
from core.settings import ApiSettings, Settings


def test_the_keep_alive_setting_reaches_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(api=ApiSettings(keep_alive_seconds=300))
    ran: dict[str, Any] = {}

    async def no_wait(_: Settings) -> None:
        return None

    monkeypatch.setattr(serve, "get_settings", lambda: settings)
    monkeypatch.setattr(serve, "setup_logging", lambda **_: None)
    monkeypatch.setattr(serve, "setup_tracing", lambda _: False)
    monkeypatch.setattr(serve, "wait_for_dependencies", no_wait)
    # Not the real asyncio.run: it would leave this thread without an event loop for the tests that follow.
    monkeypatch.setattr(serve.asyncio, "run", lambda coro: ran.setdefault("waited", coro.close() is None))
    monkeypatch.setattr(serve, "create_app", lambda s: ("app", s))
    monkeypatch.setattr(serve.uvicorn, "run", lambda app, **kwargs: ran.update(app=app, **kwargs))
    monkeypatch.setattr(serve, "exit_now", lambda code: ran.setdefault("exit", code))

    serve.main()

    assert ran["app"] == ("app", settings)
    assert ran["timeout_keep_alive"] == 300
    assert (ran["host"], ran["port"]) == (settings.api.host, settings.api.port)
    assert ran["exit"] == 0 and ran["waited"]
