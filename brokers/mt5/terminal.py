"""Windows hosts: play the EA's part in-process through the ``MetaTrader5`` package.

When the terminal runs on the same Windows machine as the worker (``mt5.terminal`` is set), no EA is
needed: ``TerminalExecutor`` polls the same command outbox, executes each command with
``MetaTrader5.order_send`` and acknowledges it, scans the deal history for fills, heartbeats the
account state and reports the symbols' ticks (the ``mt5`` quotes), all through the EA-facing ``Bridge`` (no HTTP).
The order-facing side is the same ``Mt5Broker``, and the request/result mapping is the EA path's
(``parsing.mql_request``, ``filling_sequence``, ``resolve_symbol``), so both ways of reaching a terminal
behave alike.

The package exists only for Windows (``pip install 'exodus[mt5]'``); it is imported by
``load_metatrader5()`` and nowhere else. On other hosts the tests drive this class with a simulated
terminal that has the module's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

from brokers.mt5.bridge import Bridge, BridgeRefused
from brokers.mt5.commands import CommandQueue
from brokers.mt5.parsing import filling_sequence, mql_request, plain, resolve_symbol
from brokers.mt5.protocol import (
    PROTOCOL_VERSION,
    AccountInfo,
    Ack,
    Command,
    CommandKind,
    Deal,
    EaError,
    Heartbeat,
    Mt5,
    OrderUpdate,
    PendingOrder,
    PollRequest,
    Position,
    Retcode,
    SymbolSpec,
    TerminalInfo,
    Tick,
    Ticks,
    TradeReport,
)
from core.errors import ConfigError
from core.settings import Mt5Settings
from core.tasks import stop_tasks

__all__ = ["TerminalExecutor", "load_metatrader5"]

log = logging.getLogger(__name__)

_FINAL_STATES = frozenset(
    {
        Mt5.ORDER_STATE_CANCELED,
        Mt5.ORDER_STATE_PARTIAL,
        Mt5.ORDER_STATE_FILLED,
        Mt5.ORDER_STATE_REJECTED,
        Mt5.ORDER_STATE_EXPIRED,
    }
)


def load_metatrader5() -> Any:
    """Import the ``MetaTrader5`` package (Windows only).

    Raises:
        ConfigError: not on Windows, or the package is not installed.
    """
    if sys.platform != "win32":
        raise ConfigError(
            "mt5.terminal drives a terminal through the MetaTrader5 package, which exists only for Windows; "
            "on this host run the ExodusBridge EA in the terminal instead (mql5/README.md) and unset mt5.terminal"
        )
    try:
        import MetaTrader5  # type: ignore[import-not-found]
    except ImportError as e:  # pragma: no cover - Windows only
        raise ConfigError("mt5.terminal needs the MetaTrader5 package: pip install 'exodus[mt5]'") from e
    return MetaTrader5


def _dec(value: Any) -> Decimal:
    return plain(Decimal(str(value))) if value else Decimal(0)


class TerminalExecutor:
    """Executes the bridge's commands for one account through the ``MetaTrader5`` module (or a stand-in)."""

    def __init__(
        self,
        mt5: Any,
        bridge: Bridge,
        commands: CommandQueue,
        settings: Mt5Settings,
        *,
        symbols: list[str] | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        """Drive the terminal behind ``mt5`` for ``settings.terminal.account``.

        It plays the EA: ``bridge`` takes what an EA would send over HTTP; ``commands`` is where it notes a
        command in progress (the EA's state file).
        """
        if settings.terminal is None:
            raise ConfigError("TerminalExecutor needs mt5.terminal")
        self._mt5 = mt5
        self._bridge = bridge
        self._commands = commands
        self._settings = settings
        self._cfg = settings.terminal
        self.account = self._cfg.account
        self._symbols = list(symbols if symbols is not None else self._cfg.symbols)
        self._overrides = dict(overrides if overrides is not None else self._cfg.symbol_map)
        self._resolved: dict[str, str] = {}
        self.terminal_id = f"py-{socket.gethostname()}"[:64]
        self.session_id = uuid.uuid4().hex[:16]
        self._cursor_msc = 0
        self._rounds = 0
        self._task: asyncio.Task[None] | None = None
        #: broker symbol -> tick time (server msc) last reported
        self._tick_sent: dict[str, int] = {}

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the terminal and start the polling loop."""
        await asyncio.to_thread(self._initialize)
        self._cursor_msc = int(time.time() * 1000) - 24 * 3600 * 1000
        await self.run_once(heartbeat=True)
        self._task = asyncio.create_task(self._loop(), name=f"mt5-terminal-{self.account}")

    async def stop(self) -> None:
        """Stop polling and disconnect."""
        if self._task is not None:
            task, self._task = self._task, None
            await stop_tasks([task], what=f"MT5 terminal executor {self.account}")
        await asyncio.to_thread(self._mt5.shutdown)

    def _initialize(self) -> None:
        kwargs: dict[str, Any] = {}
        if self._cfg.login is not None:
            kwargs.update(login=self._cfg.login, server=self._cfg.server)
            if self._cfg.password is not None:
                kwargs["password"] = self._cfg.password.get_secret_value()
        ok = self._mt5.initialize(self._cfg.path, **kwargs) if self._cfg.path else self._mt5.initialize(**kwargs)
        if not ok:
            raise ConfigError(f"MetaTrader5.initialize failed: {self._mt5.last_error()}")

    async def _loop(self) -> None:
        interval = self._cfg.poll_interval_ms / 1000
        while True:
            try:
                await self.run_once(heartbeat=self._rounds % 20 == 0)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MT5 terminal executor round failed; retrying")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------------------------------ one round

    async def run_once(self, *, heartbeat: bool = False) -> None:
        """One round of what the EA does on a timer: trades, heartbeat, poll, execute, acknowledge."""
        self._rounds += 1
        await self._report_trades()
        if heartbeat:
            await self._bridge.heartbeat(self.account, await asyncio.to_thread(self._heartbeat))
        reply = await self._bridge.poll(
            self.account,
            PollRequest(protocol=PROTOCOL_VERSION, terminal_id=self.terminal_id, session_id=self.session_id),
        )
        for command in reply.commands:
            state = await self._commands.command_state(command.command_id)
            if state is not None and state.ack is not None:
                continue
            was_started = await self._commands.mark_in_progress(command.command_id)
            ack = await asyncio.to_thread(self.execute, command, was_started)
            with contextlib.suppress(BridgeRefused):
                await self._bridge.ack(self.account, ack)
        await self._report_trades()
        await self._report_ticks()

    def execute(self, command: Command, was_started: bool = False) -> Ack:
        """Carry out one command (blocking: MetaTrader5 calls are IPC to the terminal)."""
        if command.kind is CommandKind.NEW:
            found = self._find_new(command)
            if found is not None:
                return found
            return self._send_new(command)
        if was_started:
            found = self._find_change(command)
            if found is not None:
                return found
        return self._send_change(command)

    # ------------------------------------------------------------------------------------------ commands

    def _ack(self, command: Command, **fields: Any) -> Ack:
        return Ack(
            protocol=PROTOCOL_VERSION,
            terminal_id=self.terminal_id,
            session_id=self.session_id,
            command_id=command.command_id,
            retcode=fields.pop("retcode", 0),
            executed_at_msc=int(time.time() * 1000),
            **fields,
        )

    def _result_ack(self, command: Command, result: Any, *, broker_symbol: str, filling: int) -> Ack:
        if result is None:
            code, text = self._mt5.last_error()
            return self._ack(
                command,
                error=EaError.ORDER_SEND_FAILED,
                message=f"order_send returned None: {code} {text}",
                broker_symbol=broker_symbol,
                filling=filling,
            )
        return self._ack(
            command,
            retcode=int(result.retcode),
            retcode_external=int(getattr(result, "retcode_external", 0)),
            order=int(result.order),
            deal=int(result.deal),
            volume=_dec(result.volume),
            price=_dec(result.price),
            bid=_dec(result.bid),
            ask=_dec(result.ask),
            comment=str(result.comment or ""),
            request_id=int(getattr(result, "request_id", 0)),
            broker_symbol=broker_symbol,
            filling=filling,
        )

    def _send_new(self, command: Command) -> Ack:
        mt5 = self._mt5
        name = self._resolve(command.symbol)
        if name is None:
            return self._ack(command, error=EaError.SYMBOL_NOT_FOUND, message=f"no symbol for {command.symbol}")
        mt5.symbol_select(name, True)
        info = mt5.symbol_info(name)
        if _dec(info.trade_contract_size) != plain(command.contract_size):
            return self._ack(
                command,
                error=EaError.CONTRACT_SIZE_MISMATCH,
                broker_symbol=name,
                message=f"{name} has contract size {_dec(info.trade_contract_size)}, "
                f"the command assumed {command.contract_size}",
            )
        step, vmin, vmax = _dec(info.volume_step), _dec(info.volume_min), _dec(info.volume_max)
        if command.volume < vmin or command.volume > vmax or (command.volume / step) % 1 != 0:
            return self._ack(
                command,
                error=EaError.VOLUME_INVALID,
                broker_symbol=name,
                message=f"{command.volume} lots is outside {vmin}..{vmax} in steps of {step}",
            )
        tick = mt5.symbol_info_tick(name)
        offset = self._server_offset()
        ack: Ack | None = None
        for filling in filling_sequence(
            command.fillings,
            order_type=command.type,
            filling_mask=int(info.filling_mode),
            exemode=int(info.trade_exemode),
        ):
            request = mql_request(
                command,
                broker_symbol=name,
                filling=filling,
                magic=self._settings.magic,
                bid=_dec(tick.bid),
                ask=_dec(tick.ask),
                server_offset_s=offset,
            )
            ack = self._result_ack(command, mt5.order_send(request), broker_symbol=name, filling=filling)
            if ack.retcode != Retcode.INVALID_FILL:
                break
        assert ack is not None
        return ack

    def _send_change(self, command: Command) -> Ack:
        mt5 = self._mt5
        ticket = command.ticket or self._open_ticket(command.order_id)
        live = mt5.orders_get(ticket=ticket) if ticket else ()
        if not live:
            return self._ack(
                command,
                error=EaError.ORDER_NOT_FOUND,
                order=ticket,
                message=f"order {ticket or command.order_id} is not working at the terminal",
            )
        name = live[0].symbol
        request = mql_request(
            command, broker_symbol=name, filling=None, magic=self._settings.magic, server_offset_s=self._server_offset()
        )
        request["order"] = ticket
        return self._result_ack(command, mt5.order_send(request), broker_symbol=name, filling=-1)

    def _find_new(self, command: Command) -> Ack | None:
        """An order already carrying this command's comment and our magic (the command ran before)."""
        mt5 = self._mt5
        for o in mt5.orders_get() or ():
            if o.magic == self._settings.magic and o.comment == command.order_id:
                return self._ack(
                    command,
                    retcode=Retcode.PLACED,
                    order=int(o.ticket),
                    broker_symbol=o.symbol,
                    volume=_dec(o.volume_initial),
                    price=_dec(o.price_open),
                    recovered=True,
                )
        for o in mt5.history_orders_get(0, int(time.time()) + 86400 * 2) or ():
            if o.magic == self._settings.magic and o.comment == command.order_id:
                filled = o.state in (Mt5.ORDER_STATE_FILLED, Mt5.ORDER_STATE_PARTIAL)
                return self._ack(
                    command,
                    retcode=Retcode.DONE if filled else Retcode.PLACED,
                    order=int(o.ticket),
                    broker_symbol=o.symbol,
                    recovered=True,
                    volume=_dec(o.volume_initial) - _dec(o.volume_current),
                )
        return None

    def _find_change(self, command: Command) -> Ack | None:
        mt5 = self._mt5
        ticket = command.ticket or self._open_ticket(command.order_id)
        if command.kind is CommandKind.CANCEL:
            hist = mt5.history_orders_get(ticket=ticket) if ticket else ()
            if hist and hist[0].state == Mt5.ORDER_STATE_CANCELED:
                return self._ack(command, retcode=Retcode.DONE, order=ticket, recovered=True)
            return None
        live = mt5.orders_get(ticket=ticket) if ticket else ()
        if live and _dec(live[0].price_open) == plain(command.price or Decimal(0)):
            return self._ack(command, retcode=Retcode.DONE, order=ticket, recovered=True)
        return None

    def _open_ticket(self, order_id: str) -> int:
        for o in self._mt5.orders_get() or ():
            if o.magic == self._settings.magic and o.comment == order_id:
                return int(o.ticket)
        return 0

    def _resolve(self, base: str) -> str | None:
        if base not in self._resolved:
            names = [s.name for s in self._mt5.symbols_get() or ()]
            name = resolve_symbol(base, names, self._overrides)
            if name is None:
                return None
            self._resolved[base] = name
        return self._resolved[base]

    # ------------------------------------------------------------------------------------------ reports

    def _server_offset(self) -> int:
        # Trade server time minus UTC, rounded to 15 minutes (as the EA computes it).
        names = list(self._resolved.values()) or [s.name for s in (self._mt5.symbols_get() or ())][:1]
        tick = self._mt5.symbol_info_tick(names[0]) if names else None
        if tick is None:
            return 0
        return round((int(tick.time_msc) - time.time() * 1000) / 1000 / 900) * 900

    async def _report_ticks(self) -> None:
        report, sending = await asyncio.to_thread(self._ticks)
        if report.ticks:
            await self._bridge.ticks(self.account, report)
            self._tick_sent.update(sending)

    def _ticks(self) -> tuple[Ticks, dict[str, int]]:
        # As the EA's ExbSendTicks: the symbols whose last tick moved since the last report.
        offset_ms = self._server_offset() * 1000
        ticks, sending = [], {}
        for name in self._resolved.values():
            tick = self._mt5.symbol_info_tick(name)
            if tick is None or int(tick.time_msc) == self._tick_sent.get(name):
                continue
            ticks.append(
                Tick(
                    broker_symbol=name,
                    bid=_dec(tick.bid),
                    ask=_dec(tick.ask),
                    last=_dec(getattr(tick, "last", 0)),
                    time_msc=int(tick.time_msc) - offset_ms,
                )
            )
            sending[name] = int(tick.time_msc)
        report = Ticks(
            protocol=PROTOCOL_VERSION,
            terminal_id=self.terminal_id,
            session_id=self.session_id,
            sent_at_msc=int(time.time() * 1000),
            ticks=ticks,
        )
        return report, sending

    async def _report_trades(self) -> None:
        report = await asyncio.to_thread(self._trades)
        if report.deals or report.orders:
            await self._bridge.trades(self.account, report)
            times = [d.time_msc for d in report.deals] + [o.time_done_msc for o in report.orders]
            self._cursor_msc = max([self._cursor_msc, *times])

    def _trades(self) -> TradeReport:
        mt5, magic = self._mt5, self._settings.magic
        offset_ms = self._server_offset() * 1000
        since = (self._cursor_msc - 60_000 + offset_ms) // 1000
        until = int(time.time()) + offset_ms // 1000 + 86400
        deals = [
            Deal(
                deal=int(d.ticket),
                order=int(d.order),
                position=int(d.position_id),
                symbol=d.symbol,
                type=int(d.type),
                entry=int(d.entry),
                reason=int(d.reason),
                volume=_dec(d.volume),
                price=_dec(d.price),
                commission=_dec(d.commission),
                fee=_dec(getattr(d, "fee", 0)),
                swap=_dec(d.swap),
                profit=_dec(d.profit),
                magic=int(d.magic),
                comment=str(d.comment),
                time_msc=int(d.time_msc) - offset_ms,
            )
            for d in mt5.history_deals_get(since, until) or ()
            if d.magic == magic
        ]
        orders = [
            OrderUpdate(
                order=int(o.ticket),
                state=int(o.state),
                type=int(o.type),
                symbol=o.symbol,
                volume_initial=_dec(o.volume_initial),
                volume_current=_dec(o.volume_current),
                price_open=_dec(o.price_open),
                magic=int(o.magic),
                comment=str(o.comment),
                time_done_msc=int(o.time_done_msc) - offset_ms,
            )
            for o in mt5.history_orders_get(since, until) or ()
            if o.magic == magic and o.state in _FINAL_STATES
        ]
        deals.sort(key=lambda d: d.deal)
        orders.sort(key=lambda o: o.order)
        return TradeReport(
            protocol=PROTOCOL_VERSION,
            terminal_id=self.terminal_id,
            session_id=self.session_id,
            deals=deals,
            orders=orders,
        )

    def _heartbeat(self) -> Heartbeat:
        mt5, magic = self._mt5, self._settings.magic
        for base in self._symbols:
            self._resolve(base)
        acc, term = mt5.account_info(), mt5.terminal_info()
        base_of = {name: base for base, name in self._resolved.items()}
        symbols = []
        for base, name in self._resolved.items():
            info = mt5.symbol_info(name)
            symbols.append(
                SymbolSpec(
                    symbol=base,
                    broker_symbol=name,
                    contract_size=_dec(info.trade_contract_size),
                    volume_min=_dec(info.volume_min),
                    volume_step=_dec(info.volume_step),
                    volume_max=_dec(info.volume_max),
                    digits=int(info.digits),
                    filling_mode=int(info.filling_mode),
                    trade_mode=int(info.trade_mode),
                    exemode=int(info.trade_exemode),
                )
            )
        offset = self._server_offset()
        return Heartbeat(
            protocol=PROTOCOL_VERSION,
            terminal_id=self.terminal_id,
            session_id=self.session_id,
            ea_version="python-terminal-1",
            sent_at_msc=int(time.time() * 1000),
            terminal=TerminalInfo(
                build=int(term.build),
                name=str(term.name),
                company=str(term.company),
                server=str(acc.server),
                connected=bool(term.connected),
                trade_allowed=bool(term.trade_allowed),
                server_offset_s=offset,
            ),
            account=AccountInfo(
                login=int(acc.login),
                currency=str(acc.currency),
                balance=_dec(acc.balance),
                equity=_dec(acc.equity),
                margin=_dec(acc.margin),
                margin_free=_dec(acc.margin_free),
                leverage=int(acc.leverage),
                margin_mode=int(acc.margin_mode),
                trade_mode=int(acc.trade_mode),
                trade_expert=bool(acc.trade_expert),
            ),
            positions=[
                Position(
                    ticket=int(p.ticket),
                    symbol=p.symbol,
                    base_symbol=base_of.get(p.symbol, ""),
                    type=int(p.type),
                    volume=_dec(p.volume),
                    price_open=_dec(p.price_open),
                    magic=int(p.magic),
                    comment=str(p.comment),
                    identifier=int(p.identifier),
                    time_msc=int(p.time_msc) - offset * 1000,
                )
                for p in mt5.positions_get() or ()
                if p.magic == magic
            ],
            orders=[
                PendingOrder(
                    ticket=int(o.ticket),
                    symbol=o.symbol,
                    base_symbol=base_of.get(o.symbol, ""),
                    type=int(o.type),
                    state=int(o.state),
                    volume_initial=_dec(o.volume_initial),
                    volume_current=_dec(o.volume_current),
                    price_open=_dec(o.price_open),
                    price_stoplimit=_dec(o.price_stoplimit),
                    magic=int(o.magic),
                    comment=str(o.comment),
                )
                for o in mt5.orders_get() or ()
                if o.magic == magic
            ],
            symbols=symbols,
        )
