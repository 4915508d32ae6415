"""A Python stand-in for the ExodusBridge EA: the same algorithm, over the same HTTP protocol.

It mirrors ``mql5/Experts/ExodusBridge.mq5`` step by step (OnInit: catch-up trade report, heartbeat; OnTimer:
resend unsent acks, flush trades, heartbeat, poll, execute, acknowledge, report changed ticks;
OnTradeTransaction: queue deals and orders moved to history) against a ``FakeTerminal``. Messages are plain
dicts written to the protocol document, not built from ``brokers.mt5.protocol``, so they check the server's
models rather than echo them; ``test_protocol.py`` compares their keys with the golden messages.

State the EA keeps in its state file survives a "restart" (``EaState`` is handed to the next peer); state
it keeps in memory does not. Faults to inject: crash right after OrderSend (before the ack is recorded),
lose ack responses, drop acks before they leave, go offline (no HTTP at all), stop heartbeats, stop ticks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from core.tasks import stop_tasks
from tests.brokers.mt5.fake_terminal import FakeTerminal

log = logging.getLogger(__name__)

PREFIX = "/api/v1/bridge/mt5/accounts"
PROTOCOL = 1
D = Decimal

FOK, IOC, RETURN = 0, 1, 2
SUCCESS = {10008, 10009, 10010, 10025}


class PeerCrashed(Exception):
    """The EA died (injected): what it had not written to its state file is lost."""


@dataclass
class EaState:
    """The EA's state file: terminal id, history cursor, and the commands it started or finished."""

    terminal_id: str = ""
    cursor_msc: int = 0
    #: command_id -> {"status": "IN_PROGRESS" | "DONE", "ack": dict | None, "sent": bool}
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)


def _s(value: Any) -> str:
    """A decimal as the EA writes it (DoubleToString, trailing zeros trimmed)."""
    text = f"{D(str(value)):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


class EaPeer:
    """Plays ExodusBridge.mq5 for one account against a fake terminal."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        terminal: FakeTerminal,
        *,
        account: str,
        token: str,
        magic: int,
        state: EaState | None = None,
        symbols: tuple[str, ...] = ("EURUSD", "GBPUSD", "USDJPY"),
        overrides: dict[str, str] | None = None,
        heartbeat_every: int = 10,
        ticks_every: int = 3,
    ) -> None:
        self.http = http
        self.terminal = terminal
        self.account = account
        self.token = token
        self.magic = magic
        self.state = state if state is not None else EaState()
        self.symbols = list(symbols)
        self.overrides = overrides or {}
        self.heartbeat_every = heartbeat_every
        self.ticks_every = ticks_every
        self.session_id = uuid.uuid4().hex[:16]
        self._deals: list[dict[str, Any]] = []
        self._orders: list[dict[str, Any]] = []
        self._ticks = 0
        self._heartbeat_due = False
        self._resolved: dict[str, str] = {}
        #: broker symbol -> MqlTick.time_msc last reported and accepted (ExbSendTicks' g_tick_sent_msc)
        self._tick_sent: dict[str, int] = {}
        self.ticks_off = False
        # faults
        self.crash_after_send: str | None = None
        self.lose_ack_responses = 0
        self.lose_poll_responses = 0
        self.drop_acks = 0
        self.offline = False
        self.send_heartbeats = True
        self.send_ticks = True
        # observations
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self.responses: list[tuple[str, int, Any]] = []
        self.executed: list[str] = []
        self.errors: list[str] = []
        self.dead = False
        terminal.listeners.append(self._on_trade_transaction)

    # ============================================================================== EA entry points

    async def on_init(self) -> None:
        """OnInit: terminal id, catch up on history since the cursor, first heartbeat."""
        if not self.state.terminal_id:
            self.state.terminal_id = "T" + uuid.uuid4().hex[:15]
        for name in self.symbols:
            self._resolve(name)
        self._catch_up()
        await self._flush_trades()
        await self.heartbeat()

    async def tick(self) -> None:
        """OnTimer."""
        if self.dead:
            raise PeerCrashed("the EA is not running")
        if self.offline:
            return
        self._ticks += 1
        await self._resend_acks()
        await self._flush_trades()
        if self.send_heartbeats and (self._ticks % self.heartbeat_every == 0 or self._heartbeat_due):
            await self.heartbeat()
        reply = await self._post("/commands/poll", self._ident() | {"max_commands": 20})
        if reply is None:
            self._heartbeat_due = self.responses[-1][1] == 409  # HEARTBEAT_FIRST
            return
        if self.lose_poll_responses > 0 and reply["commands"]:
            self.lose_poll_responses -= 1
            return  # the server leased the commands, the EA never saw them
        for command in reply["commands"]:
            await self._handle(command)
        await self._flush_trades()
        if self._ticks % self.ticks_every == 1 % self.ticks_every:  # the first round reports at once
            await self.report_ticks()

    async def sync(self) -> None:
        """One full timer round including a heartbeat and ticks (tests step the EA with this)."""
        await self.tick()
        if not self.offline:
            await self.heartbeat()
            await self._flush_trades()
            await self.report_ticks()

    def detach(self) -> None:
        """Stop seeing the terminal's transactions (this EA instance is gone)."""
        self.dead = True
        with contextlib.suppress(ValueError):
            self.terminal.listeners.remove(self._on_trade_transaction)

    @contextlib.asynccontextmanager
    async def running(self, interval: float = 0.03) -> AsyncIterator[EaPeer]:
        """Run OnTimer every ``interval`` seconds in the background.

        Stopping cannot hang: the loop also ends on a flag, so a round that swallowed the cancel (a wait for a
        pool connection can, on Python 3.11) ends the loop when it returns, and ``stop_tasks`` cancels again.
        """
        stopping = False

        async def loop() -> None:
            while not self.dead and not stopping:
                try:
                    await self.tick()
                except PeerCrashed:
                    self.detach()
                    return
                except Exception as e:  # the EA logs and carries on
                    self.errors.append(repr(e))
                    log.warning("peer tick failed: %r", e)
                await asyncio.sleep(interval)

        task = asyncio.create_task(loop(), name=f"ea-peer-{self.account}")
        try:
            yield self
        finally:
            stopping = True
            if not await stop_tasks([task], what=f"EA peer of {self.account}", grace=30):
                raise RuntimeError(f"the EA peer of {self.account} did not stop within 30 s of being cancelled")

    # ============================================================================== HTTP

    def _ident(self) -> dict[str, Any]:
        return {"protocol": PROTOCOL, "terminal_id": self.state.terminal_id, "session_id": self.session_id}

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        self.sent.setdefault(path, []).append(body)
        resp = await self.http.post(
            f"{PREFIX}/{self.account}{path}", json=body, headers={"Authorization": f"Bearer {self.token}"}
        )
        payload = resp.json() if resp.content else None
        self.responses.append((path, resp.status_code, payload))
        if resp.status_code != 200:
            self.errors.append(f"{path} {resp.status_code}: {payload}")
            return None
        return payload

    async def heartbeat(self) -> Any:
        t = self.terminal
        acc, term = t.account_info(), t.terminal_info()
        positions = [
            {
                "ticket": p.ticket,
                "symbol": p.symbol,
                "base_symbol": self._base_of(p.symbol),
                "type": p.type,
                "volume": _s(p.volume),
                "price_open": _s(p.price_open),
                "magic": p.magic,
                "comment": p.comment,
                "identifier": p.identifier,
                "time_msc": self._utc_msc(p.time_msc),
            }
            for p in t.positions_get()
            if p.magic == self.magic
        ]
        orders = [
            {
                "ticket": o.ticket,
                "symbol": o.symbol,
                "base_symbol": self._base_of(o.symbol),
                "type": o.type,
                "state": o.state,
                "volume_initial": _s(o.volume_initial),
                "volume_current": _s(o.volume_current),
                "price_open": _s(o.price_open),
                "price_stoplimit": _s(o.price_stoplimit),
                "magic": o.magic,
                "comment": o.comment,
            }
            for o in t.orders_get()
            if o.magic == self.magic
        ]
        symbols = []
        for base, name in self._resolved.items():
            info = t.symbol_info(name)
            symbols.append(
                {
                    "symbol": base,
                    "broker_symbol": name,
                    "contract_size": _s(info.trade_contract_size),
                    "volume_min": _s(info.volume_min),
                    "volume_step": _s(info.volume_step),
                    "volume_max": _s(info.volume_max),
                    "digits": info.digits,
                    "filling_mode": info.filling_mode,
                    "trade_mode": info.trade_mode,
                    "exemode": info.trade_exemode,
                }
            )
        body = self._ident() | {
            "ea_version": "1.10",
            "sent_at_msc": int(time.time() * 1000),
            "terminal": {
                "build": term.build,
                "name": term.name,
                "company": term.company,
                "server": acc.server,
                "connected": term.connected,
                "trade_allowed": term.trade_allowed,
                "server_offset_s": self._offset(),
            },
            "account": {
                "login": acc.login,
                "currency": acc.currency,
                "balance": _s(acc.balance),
                "equity": _s(acc.equity),
                "margin": _s(acc.margin),
                "margin_free": _s(acc.margin_free),
                "leverage": acc.leverage,
                "margin_mode": acc.margin_mode,
                "trade_mode": acc.trade_mode,
                "trade_expert": acc.trade_expert,
            },
            "positions": positions,
            "orders": orders,
            "symbols": symbols,
        }
        return await self._post("/heartbeat", body)

    async def report_ticks(self) -> Any:
        """ExbSendTicks: the last tick of each resolved symbol whose tick time moved since the last accepted report."""
        if not self.send_ticks or self.ticks_off or self.offline:
            return None
        ticks, sending = [], {}
        for name in self._resolved.values():
            tick = self.terminal.symbol_info_tick(name)
            if tick is None or tick.time_msc == self._tick_sent.get(name):
                continue
            ticks.append(
                {
                    "broker_symbol": name,
                    "bid": _s(tick.bid),
                    "ask": _s(tick.ask),
                    "last": _s(tick.last),
                    "time_msc": self._utc_msc(tick.time_msc),
                }
            )
            sending[name] = tick.time_msc
        if not ticks:
            return None
        reply = await self._post("/ticks", self._ident() | {"sent_at_msc": int(time.time() * 1000), "ticks": ticks})
        if reply is None:
            status = self.responses[-1][1]
            self.ticks_off = status == 404  # an Exodus that predates ticks
            self._heartbeat_due = self._heartbeat_due or status == 409  # HEARTBEAT_FIRST
            return None
        self._tick_sent.update(sending)
        return reply

    # ============================================================================== commands

    async def _handle(self, command: dict[str, Any]) -> None:
        cid = command["command_id"]
        entry = self.state.commands.get(cid)
        if entry is not None and entry["status"] == "DONE":
            await self._send_ack(cid)  # the server did not get it: the same ack again, never a second send
            return
        ack = None
        if entry is not None and entry["status"] == "IN_PROGRESS":
            ack = self._recover(command)  # died mid-command: look before executing again
        if ack is None:
            self.state.commands[cid] = {"status": "IN_PROGRESS", "ack": None, "sent": False}
            ack = self._execute(command)
        self.state.commands[cid] = {"status": "DONE", "ack": ack, "sent": False}
        await self._send_ack(cid)

    async def _send_ack(self, cid: str) -> None:
        entry = self.state.commands[cid]
        if self.drop_acks > 0:
            self.drop_acks -= 1
            return
        reply = await self._post("/acks", entry["ack"])
        if self.lose_ack_responses > 0:
            self.lose_ack_responses -= 1
            return  # the server has it, but the EA never saw the answer
        status = self.responses[-1][1]
        if reply is not None or status in (404, 409):
            entry["sent"] = True

    async def _resend_acks(self) -> None:
        for cid, entry in list(self.state.commands.items()):
            if entry["status"] == "DONE" and not entry["sent"]:
                await self._send_ack(cid)

    def _ack(self, command: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = self._ident() | {
            "command_id": command["command_id"],
            "retcode": 0,
            "retcode_external": 0,
            "order": 0,
            "deal": 0,
            "volume": "0",
            "price": "0",
            "bid": "0",
            "ask": "0",
            "comment": "",
            "request_id": 0,
            "error": "",
            "message": "",
            "broker_symbol": "",
            "filling": -1,
            "recovered": False,
            "executed_at_msc": int(time.time() * 1000),
        }
        body.update(fields)
        return body

    def _result_ack(self, command: dict[str, Any], res: Any, *, name: str, filling: int) -> dict[str, Any]:
        return self._ack(
            command,
            retcode=res.retcode,
            retcode_external=res.retcode_external,
            order=res.order,
            deal=res.deal,
            volume=_s(res.volume),
            price=_s(res.price),
            bid=_s(res.bid),
            ask=_s(res.ask),
            comment=res.comment,
            request_id=res.request_id,
            broker_symbol=name,
            filling=filling,
        )

    def _execute(self, command: dict[str, Any]) -> dict[str, Any]:
        kind = command["kind"]
        if kind == "NEW":
            return self._execute_new(command)
        if kind in ("CANCEL", "MODIFY"):
            return self._execute_change(command)
        return self._ack(command, error="UNSUPPORTED_COMMAND", message=f"unknown kind {kind}")

    def _execute_new(self, command: dict[str, Any]) -> dict[str, Any]:
        found = self._recover(command)
        if found is not None:
            return found
        t = self.terminal
        name = self._resolve(command["symbol"])
        if name is None:
            return self._ack(command, error="SYMBOL_NOT_FOUND", message=f"no symbol for {command['symbol']}")
        info = t.symbol_info(name)
        if D(str(info.trade_contract_size)) != D(command["contract_size"]):
            return self._ack(
                command,
                error="CONTRACT_SIZE_MISMATCH",
                broker_symbol=name,
                message=f"{name} has contract size {_s(info.trade_contract_size)}, "
                f"command assumed {command['contract_size']}",
            )
        volume = D(command["volume"])
        step, vmin, vmax = D(str(info.volume_step)), D(str(info.volume_min)), D(str(info.volume_max))
        if volume < vmin or volume > vmax or (volume / step) % 1 != 0:
            return self._ack(
                command,
                error="VOLUME_INVALID",
                broker_symbol=name,
                message=f"{volume} lots outside {vmin}..{vmax} step {step}",
            )
        market = command["action"] == 1
        tick = t.symbol_info_tick(name)
        ack: dict[str, Any] | None = None
        for filling in self._fillings(command["fillings"], command["type"], info.filling_mode, info.trade_exemode):
            request: dict[str, Any] = {
                "action": command["action"],
                "magic": self.magic,
                "symbol": name,
                "volume": float(volume),
                "type": command["type"],
                "type_filling": filling,
                "type_time": command["type_time"],
                "comment": command["order_id"],
            }
            if market:
                request["price"] = tick.ask if command["type"] == 0 else tick.bid
                request["deviation"] = command["deviation"]
            else:
                request["price"] = float(command["price"])
                if command.get("stoplimit"):
                    request["stoplimit"] = float(command["stoplimit"])
                if command["expiration"]:
                    request["expiration"] = command["expiration"] + self._offset()
            res = t.order_send(request)
            self.executed.append(command["command_id"])
            if self.crash_after_send == "NEW":
                self.crash_after_send = None
                raise PeerCrashed(f"crashed after sending {command['command_id']}")
            ack = self._result_ack(command, res, name=name, filling=filling)
            if res.retcode != 10030:
                break
        assert ack is not None
        return ack

    def _execute_change(self, command: dict[str, Any]) -> dict[str, Any]:
        t = self.terminal
        ticket = command["ticket"] or self._find_open(command["order_id"])
        open_order = t.orders_get(ticket=ticket) if ticket else ()
        if not open_order:
            hist = t.history_orders_get(ticket=ticket) if ticket else ()
            where = f"order {ticket} is no longer working" + (f" (state {hist[0].state})" if hist else "")
            return self._ack(command, error="ORDER_NOT_FOUND", message=where, order=ticket or 0)
        name = open_order[0].symbol
        if command["kind"] == "CANCEL":
            request: dict[str, Any] = {"action": 8, "order": ticket}
        else:
            request = {
                "action": 7,
                "order": ticket,
                "symbol": name,
                "price": float(command["price"] or 0),
                "stoplimit": float(command.get("stoplimit") or 0),
                "type_time": command["type_time"],
            }
            if command["expiration"]:
                request["expiration"] = command["expiration"] + self._offset()
        res = t.order_send(request)
        self.executed.append(command["command_id"])
        if self.crash_after_send == command["kind"]:
            self.crash_after_send = None
            raise PeerCrashed(f"crashed after sending {command['command_id']}")
        return self._result_ack(command, res, name=name, filling=-1)

    def _recover(self, command: dict[str, Any]) -> dict[str, Any] | None:
        """Look for what a command may already have done (magic + comment), before doing it again."""
        t = self.terminal
        if command["kind"] == "NEW":
            oid = command["order_id"]
            for o in t.orders_get():
                if o.magic == self.magic and o.comment == oid:
                    return self._ack(
                        command,
                        retcode=10008,
                        order=o.ticket,
                        broker_symbol=o.symbol,
                        recovered=True,
                        volume=_s(o.volume_initial),
                        price=_s(o.price_open),
                    )
            for o in t.history_orders_get(0, 2**40):
                if o.magic == self.magic and o.comment == oid:
                    code = 10009 if o.state in (4, 3) else 10008
                    return self._ack(
                        command,
                        retcode=code,
                        order=o.ticket,
                        broker_symbol=o.symbol,
                        recovered=True,
                        volume=_s(o.volume_initial - o.volume_current),
                    )
            return None
        ticket = command["ticket"] or self._find_open(command["order_id"]) or self._find_history(command["order_id"])
        if command["kind"] == "CANCEL":
            hist = t.history_orders_get(ticket=ticket) if ticket else ()
            if hist and hist[0].state == 2:
                return self._ack(command, retcode=10009, order=ticket, recovered=True)
            return None
        live = t.orders_get(ticket=ticket) if ticket else ()
        if live and D(str(live[0].price_open)) == D(command["price"] or 0):
            return self._ack(command, retcode=10009, order=ticket, recovered=True)
        return None

    def _find_open(self, order_id: str) -> int:
        for o in self.terminal.orders_get():
            if o.magic == self.magic and o.comment == order_id:
                return int(o.ticket)
        return 0

    def _find_history(self, order_id: str) -> int:
        for o in self.terminal.history_orders_get(0, 2**40):
            if o.magic == self.magic and o.comment == order_id:
                return int(o.ticket)
        return 0

    @staticmethod
    def _fillings(preferred: list[int], order_type: int, mask: int, exemode: int) -> list[int]:
        # Trade.mqh ExbFillingSequence, line for line.
        market = order_type in (0, 1)
        if market and exemode in (0, 1):
            allowed = {FOK}
        else:
            allowed = set()
            if mask & 1:
                allowed.add(FOK)
            if mask & 2:
                allowed.add(IOC)
            if exemode == 3 or (exemode == 2 and order_type in (2, 3, 6, 7)):
                allowed.add(RETURN)
        chosen = [f for f in preferred if f in allowed]
        return chosen or list(preferred)

    def _resolve(self, base: str) -> str | None:
        if base in self._resolved:
            return self._resolved[base]
        names = [s.name for s in self.terminal.symbols_get()]
        if base in self.overrides:
            name = self.overrides[base] if self.overrides[base] in names else None
        elif base in names:
            name = base
        else:
            candidates = sorted(
                (n for n in names if n.startswith(base) and len(n) > len(base)), key=lambda n: (len(n), n)
            )
            name = candidates[0] if candidates else None
        if name is not None:
            self._resolved[base] = name
        return name

    def _base_of(self, name: str) -> str:
        return next((b for b, n in self._resolved.items() if n == name), "")

    # ============================================================================== trades

    def _offset(self) -> int:
        # TimeTradeServer() - TimeGMT(), rounded to 15 minutes as the EA does.
        server_ms = self.terminal.symbol_info_tick(next(iter(self.terminal.symbols))).time_msc
        return round((server_ms - time.time() * 1000) / 1000 / 900) * 900

    def _utc_msc(self, server_msc: int) -> int:
        return int(server_msc) - self._offset() * 1000

    def _on_trade_transaction(self, kind: str, ticket: int) -> None:
        t = self.terminal
        if kind == "DEAL_ADD":
            deal = t.deals[ticket]
            if deal.magic == self.magic:
                self._deals.append(self._deal_body(deal))
        elif kind == "HISTORY_ADD":
            order = t.history_orders[ticket]
            if order.magic == self.magic:
                self._orders.append(self._order_body(order))

    def _deal_body(self, d: Any) -> dict[str, Any]:
        return {
            "deal": d.ticket,
            "order": d.order,
            "position": d.position_id,
            "symbol": d.symbol,
            "type": d.type,
            "entry": d.entry,
            "reason": d.reason,
            "volume": _s(d.volume),
            "price": _s(d.price),
            "commission": _s(d.commission),
            "fee": _s(d.fee),
            "swap": _s(d.swap),
            "profit": _s(d.profit),
            "magic": d.magic,
            "comment": d.comment,
            "time_msc": self._utc_msc(d.time_msc),
        }

    def _order_body(self, o: Any) -> dict[str, Any]:
        return {
            "order": o.ticket,
            "state": o.state,
            "type": o.type,
            "symbol": o.symbol,
            "volume_initial": _s(o.volume_initial),
            "volume_current": _s(o.volume_current),
            "price_open": _s(o.price_open),
            "magic": o.magic,
            "comment": o.comment,
            "time_done_msc": self._utc_msc(o.time_done_msc),
        }

    def _catch_up(self) -> None:
        since = self.state.cursor_msc - 60_000
        t = self.terminal
        for d in sorted(t.deals.values(), key=lambda d: d.ticket):
            if d.magic == self.magic and self._utc_msc(d.time_msc) >= since:
                self._deals.append(self._deal_body(d))
        for o in sorted(t.history_orders.values(), key=lambda o: o.ticket):
            if o.magic == self.magic and self._utc_msc(o.time_done_msc) >= since:
                self._orders.append(self._order_body(o))

    async def _flush_trades(self) -> None:
        if self.offline or not (self._deals or self._orders):
            return
        deals, orders = self._deals[:50], self._orders[:50]
        reply = await self._post("/trades", self._ident() | {"deals": deals, "orders": orders})
        if reply is None:
            return
        del self._deals[: len(deals)]
        del self._orders[: len(orders)]
        times = [d["time_msc"] for d in deals] + [o["time_done_msc"] for o in orders]
        self.state.cursor_msc = max([self.state.cursor_msc, *times])
