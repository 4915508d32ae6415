"""Fixtures for the MT5 bridge: a bridge account with its own fake terminal, the API app, and an EA peer."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from api.main import create_app
from brokers.mt5 import BridgeStore
from core.instruments import InstrumentCatalog
from core.settings import Mt5AccountSettings, Mt5Settings, Settings
from tests.brokers.mt5.peer import EaPeer, EaState
from tests.brokers.mt5.terminal import FakeTerminal
from tests.conftest import make_settings

MAGIC = 20260505


def bridge_settings(database_url: str, accounts: list[str], *, address: str = "localhost:1", **mt5: Any) -> Settings:
    """Settings with one bridge account (token ``tok-<account>``) per name."""
    cfg = {
        "accounts": {a: Mt5AccountSettings(token=f"tok-{a}") for a in accounts},
        "magic": MAGIC,
        "ack_wait_seconds": 5.0,
        "housekeeping_interval_seconds": 0.2,
    }
    cfg.update(mt5)
    return make_settings(database_url, address, mt5=Mt5Settings(**cfg))


def new_account() -> str:
    return f"xm-{uuid.uuid4().hex[:8]}"


@dataclass
class Rig:
    """One bridge account: its settings, terminal, HTTP client to the API, store and EA peer."""

    settings: Settings
    account: str
    terminal: FakeTerminal
    http: httpx.AsyncClient
    store: BridgeStore
    peer: EaPeer

    @property
    def token(self) -> str:
        return f"tok-{self.account}"

    def url(self, path: str) -> str:
        return f"/api/v1/bridge/mt5/accounts/{self.account}{path}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def restart_peer(self, *, state: EaState | None = None) -> EaPeer:
        """The EA is restarted: a new instance with the state file (not the memory) of the old one."""
        old = self.peer
        old.detach()
        self.peer = EaPeer(self.http, self.terminal, account=self.account, token=self.token, magic=MAGIC,
                           state=state if state is not None else old.state)
        await self.peer.on_init()
        return self.peer


@contextlib.asynccontextmanager
async def open_rig(
    settings: Settings, account: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog, *,
    app_kwargs: dict[str, Any] | None = None, terminal: FakeTerminal | None = None,
) -> AsyncIterator[Rig]:
    app = create_app(settings, pool=pool, instruments=instruments, **(app_kwargs or {}))
    terminal = terminal or FakeTerminal()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        peer = EaPeer(http, terminal, account=account, token=f"tok-{account}", magic=MAGIC)
        yield Rig(settings, account, terminal, http, BridgeStore(pool, settings.mt5, instruments=instruments), peer)


@pytest.fixture
async def rig(database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> AsyncIterator[Rig]:
    """A bridge account whose EA peer has started (heartbeat sent) but does not run on its own."""
    account = new_account()
    settings = bridge_settings(database_url, [account])
    async with open_rig(settings, account, pool, instruments) as r:
        await r.peer.on_init()
        yield r
