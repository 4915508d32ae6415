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
from brokers.mt5.commands import CommandQueue
from brokers.mt5.reports import ReportJournal
from core.instruments import InstrumentCatalog
from core.settings import Mt5AccountSettings, Mt5Settings, Settings
from tests.brokers.mt5.fake_terminal import FakeTerminal
from tests.brokers.mt5.peer import EaPeer, EaState
from tests.brokers.storage import FailingPool
from tests.conftest import make_settings
from tests.harness import Stack

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
    """One bridge account: its settings, terminal, HTTP client to the API, command queue, reports and EA peer."""

    settings: Settings
    account: str
    terminal: FakeTerminal
    http: httpx.AsyncClient
    commands: CommandQueue
    reports: ReportJournal
    peer: EaPeer
    broker: Any = None
    _loop: Any = None
    #: The pool the broker keeps its records through (``mt5_rig``: one that fails on demand).
    storage: Any = None

    async def start_loop(self, interval: float = 0.03) -> None:
        """Run the EA's timer in the background."""
        self._loop = self.peer.running(interval)
        await self._loop.__aenter__()

    async def stop_loop(self) -> None:
        if self._loop is not None:
            loop, self._loop = self._loop, None
            await loop.__aexit__(None, None, None)

    @property
    def token(self) -> str:
        return f"tok-{self.account}"

    def url(self, path: str) -> str:
        return f"/api/v1/bridge/mt5/accounts/{self.account}{path}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def restart_peer(self, *, state: EaState | None = None) -> EaPeer:
        """The EA is restarted: a new instance with the state file (not the memory) of the old one."""
        looping = self._loop is not None
        await self.stop_loop()
        old = self.peer
        old.detach()
        self.peer = EaPeer(
            self.http,
            self.terminal,
            account=self.account,
            token=self.token,
            magic=MAGIC,
            state=state if state is not None else old.state,
        )
        await self.peer.on_init()
        if looping:
            await self.start_loop()
        return self.peer


@contextlib.asynccontextmanager
async def open_rig(
    settings: Settings,
    account: str,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    *,
    app_kwargs: dict[str, Any] | None = None,
    terminal: FakeTerminal | None = None,
) -> AsyncIterator[Rig]:
    app = create_app(settings, pool=pool, instruments=instruments, **(app_kwargs or {}))
    terminal = terminal or FakeTerminal()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://exodus.test") as http:
        peer = EaPeer(http, terminal, account=account, token=f"tok-{account}", magic=MAGIC)
        commands = CommandQueue(pool, settings.mt5, instruments=instruments)
        yield Rig(settings, account, terminal, http, commands, ReportJournal(pool), peer)


@pytest.fixture
async def rig(database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> AsyncIterator[Rig]:
    """A bridge account whose EA peer has started (heartbeat sent) but does not run on its own."""
    account = new_account()
    settings = bridge_settings(database_url, [account])
    async with open_rig(settings, account, pool, instruments) as r:
        await r.peer.on_init()
        yield r


@pytest.fixture
async def mt5_rig(
    database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: Any
) -> AsyncIterator[Rig]:
    """A started MT5 broker (reports to ``reports``) with its EA peer running in the background."""
    from brokers.mt5.execution import Mt5Broker

    account = new_account()
    settings = bridge_settings(database_url, [account])
    async with open_rig(settings, account, pool, instruments) as r:
        await r.peer.on_init()
        await r.peer.report_ticks()
        r.storage = FailingPool(pool)  # the broker's records fail on demand; the EA's side (the API) does not
        broker = Mt5Broker(r.storage, settings.mt5, database_url=database_url, instruments=instruments)
        await broker.start(reports)
        r.broker = broker
        try:
            await r.start_loop()
            yield r
        finally:
            await r.stop_loop()
            await broker.close()
            if r.broker is not broker:  # restarted by a test
                await r.broker.close()


@pytest.fixture
def broker(mt5_rig: Rig) -> Any:
    return mt5_rig.broker


@pytest.fixture
def market(mt5_rig: Rig, contract_instrument: Any) -> FakeTerminal:
    terminal = mt5_rig.terminal
    sym = terminal.sym(contract_instrument.symbol)
    sym.liquidity = contract_instrument.display_qty / sym.contract_size  # deals the size the contract expects
    return terminal


@pytest.fixture
def contract_instrument(instruments: InstrumentCatalog) -> Any:
    inst = instruments.get("EURUSD")
    assert inst is not None
    return inst


@pytest.fixture
def contract_account(mt5_rig: Rig) -> str:
    return mt5_rig.account


# ------------------------------------------------------------------------------------------------ with Temporal


@dataclass
class Mt5Stack:
    """A running worker that owns the ``mt5`` broker, and bridge accounts not used yet."""

    stack: Stack
    accounts: list[str]


@pytest.fixture(scope="module")
async def mt5_stack(
    temporal_env: Any, pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str
) -> AsyncIterator[Mt5Stack]:
    """The order workflows and the MT5 broker (built by the registry, as the worker does) on the dev server."""
    from brokers import BROKERS, BrokerContext
    from tests.conftest import temporal_address

    accounts = [new_account() for _ in range(32)]
    settings = bridge_settings(database_url, accounts, address=temporal_address(temporal_env))
    broker = await BROKERS["mt5"].factory(BrokerContext(settings=settings, instruments=instruments, pool=pool))
    async with Stack.running(temporal_env.client, settings, pool, instruments, {"mt5": broker}) as stack:
        yield Mt5Stack(stack, accounts)


@pytest.fixture
async def xm(mt5_stack: Mt5Stack, pool: AsyncConnectionPool, instruments: InstrumentCatalog) -> AsyncIterator[Rig]:
    """A fresh bridge account of the running stack, its terminal, and its EA running against the API."""
    stack = mt5_stack.stack
    account = mt5_stack.accounts.pop()
    async with stack.api() as http:
        terminal = FakeTerminal()
        peer = EaPeer(http, terminal, account=account, token=f"tok-{account}", magic=MAGIC)
        rig = Rig(
            stack.settings,
            account,
            terminal,
            http,
            CommandQueue(pool, stack.settings.mt5, instruments=instruments),
            ReportJournal(pool),
            peer,
            broker=stack.brokers["mt5"],
        )
        await peer.on_init()
        await peer.report_ticks()  # what its first timer round does: risk prices MT5 orders with these
        await rig.start_loop()
        try:
            yield rig
        finally:
            await rig.stop_loop()
