"""The Windows path: ``TerminalExecutor`` over the MetaTrader5 API, with the simulated terminal standing in
for the Windows-only package (the one fake allowed here: the real module cannot run on Linux).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.mt5.bridge import Bridge
from brokers.mt5.commands import CommandQueue
from brokers.mt5.execution import Mt5Broker
from brokers.mt5.terminal import TerminalExecutor, load_metatrader5
from core.domain import (
    CancelOrder,
    OrderSide,
    OrderStatus,
    OrderType,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    derive_order_id,
)
from core.errors import ConfigError
from core.instruments import InstrumentCatalog
from core.settings import Mt5TerminalSettings
from tests.brokers.contract import ReportCollector
from tests.brokers.mt5.conftest import MAGIC, bridge_settings, new_account
from tests.brokers.mt5.fake_terminal import FakeTerminal

D = Decimal


@pytest.mark.skipif(sys.platform == "win32", reason="checks the refusal on hosts without the package")
def test_the_metatrader5_package_is_refused_off_windows() -> None:
    with pytest.raises(ConfigError, match="exists only for Windows"):
        load_metatrader5()


async def test_registry_refuses_mt5_terminal_settings_off_windows(database_url: str) -> None:
    from brokers import BROKERS, BrokerContext

    settings = bridge_settings(database_url, ["acct"], terminal=Mt5TerminalSettings(account="acct"))
    if sys.platform == "win32":
        pytest.skip("on Windows the package may be installed")

    class _Pool:  # never touched: the factory refuses before using it
        pass

    with pytest.raises(ConfigError, match="exists only for Windows"):
        await BROKERS["mt5"].factory(BrokerContext(settings=settings, instruments=None, pool=_Pool()))  # type: ignore[arg-type]


class Setup:
    def __init__(
        self,
        broker: Mt5Broker,
        executor: TerminalExecutor,
        terminal: FakeTerminal,
        account: str,
        reports: ReportCollector,
        bridge: Bridge,
    ) -> None:
        self.broker, self.executor, self.terminal, self.account, self.reports, self.bridge = (
            broker,
            executor,
            terminal,
            account,
            reports,
            bridge,
        )

    def order(self, **kw: object) -> SubmitOrder:
        fields: dict[str, object] = {
            "client_order_id": derive_order_id(uuid.uuid4().hex),
            "account": self.account,
            "symbol": "EURUSD",
            "side": OrderSide.BUY,
            "type": OrderType.MARKET,
            "time_in_force": TimeInForce.GTC,
            "qty": D("10000"),
        }
        fields.update(kw)
        return SubmitOrder(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def windows(
    database_url: str, pool: AsyncConnectionPool, instruments: InstrumentCatalog, reports: ReportCollector
) -> AsyncIterator[Setup]:
    account = new_account()
    settings = bridge_settings(
        database_url, [account], terminal=Mt5TerminalSettings(account=account, poll_interval_ms=20)
    )
    terminal = FakeTerminal()
    bridge = Bridge(pool, settings.mt5, instruments=instruments)
    commands = CommandQueue(pool, settings.mt5, instruments=instruments)
    executor = TerminalExecutor(terminal, bridge, commands, settings.mt5, symbols=["EURUSD", "USDJPY"])
    broker = Mt5Broker(pool, settings.mt5, database_url=database_url, instruments=instruments, executors=[executor])
    await broker.start(reports)
    try:
        yield Setup(broker, executor, terminal, account, reports, bridge)
    finally:
        await broker.close()


async def test_terminal_executor_sends_the_shared_request_and_reports_the_fill(windows: Setup) -> None:
    order = windows.order(qty=D("30000"))
    ack = await windows.broker.submit_order(order)
    assert ack.accepted, ack.reason
    [sent] = windows.terminal.sent
    assert sent == {
        "action": 1,
        "magic": MAGIC,
        "symbol": "EURUSD#",
        "volume": 0.3,
        "type": 0,
        "comment": order.cl_ord_id,
        "type_time": 0,
        "type_filling": 0,
        "price": 1.08501,
        "deviation": 20,
    }
    await windows.reports.wait_for(lambda rs: any(r.kind is ReportKind.FILL for r in rs))
    [fill] = [r for r in windows.reports.of(order.cl_ord_id) if r.kind is ReportKind.FILL]
    assert (fill.last_qty, fill.last_price) == (D(30000), D("1.08501"))
    status = await windows.broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED
    await windows.executor.run_once(heartbeat=True)
    [position] = await windows.broker.positions()
    assert (position.account, position.symbol, position.qty) == (windows.account, "EURUSD", D(30000))


async def test_terminal_executor_falls_back_through_fillings_and_cancels_pending_orders(windows: Setup) -> None:
    windows.terminal.sym("EURUSD").refuse_fillings = frozenset({0})
    ack = await windows.broker.submit_order(windows.order())
    assert ack.accepted
    assert [s["type_filling"] for s in windows.terminal.sent] == [0, 1]
    limit = windows.order(type=OrderType.LIMIT, price=D("1.07000"))
    assert (await windows.broker.submit_order(limit)).accepted
    assert windows.terminal.sent[-1]["type_filling"] == 2  # RETURN for a resting limit
    cancel = await windows.broker.cancel_order(
        CancelOrder(cl_ord_id=limit.cl_ord_id, symbol="EURUSD", side=OrderSide.BUY, qty=limit.qty)
    )
    assert cancel.accepted, cancel.reason
    assert windows.terminal.sent[-1] == {"action": 8, "order": int(cancel.broker_order_id or 0)}


async def test_terminal_executor_after_a_crash_finds_the_order_instead_of_sending_again(
    windows: Setup, pool: AsyncConnectionPool
) -> None:
    await windows.executor.stop()  # the worker "dies" ...
    order = windows.order()
    command_id, _ = await windows.broker.commands.enqueue_new(order)
    [command] = (await windows.bridge.poll(windows.account, _poll(windows))).commands
    assert await windows.broker.commands.mark_in_progress(command_id) is False
    windows.executor.execute(command)  # ... right after order_send, before acknowledging
    assert len(windows.terminal.sent) == 1
    await windows.executor.run_once()  # the restarted executor polls the same command again
    state = await windows.broker.commands.command_state(command_id)
    assert state is not None and state.ack is not None and state.ack.recovered and state.ack.retcode == 10009
    assert len(windows.terminal.sent) == 1


async def test_terminal_executor_heartbeat_reports_symbols_and_positions(
    windows: Setup, pool: AsyncConnectionPool
) -> None:
    windows.terminal.manual_trade("USDJPY", 1, D("0.02"), magic=MAGIC)
    await windows.executor.run_once(heartbeat=True)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT broker_symbol, contract_size FROM mt5_symbols WHERE account = %s ORDER BY symbol",
            (windows.account,),
        )
        specs = await cur.fetchall()
    assert [(s["broker_symbol"], s["contract_size"]) for s in specs] == [("EURUSD#", D(100000)), ("USDJPY#", D(100000))]
    [position] = await windows.broker.positions()
    assert (position.symbol, position.qty) == ("USDJPY", D(-2000))


def _poll(windows: Setup):  # type: ignore[no-untyped-def]
    from brokers.mt5.protocol import PollRequest

    return PollRequest(protocol=1, terminal_id=windows.executor.terminal_id, session_id=windows.executor.session_id)
