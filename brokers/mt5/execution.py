"""The MT5 broker: the ``Broker`` protocol over the bridge's command outbox.

A request becomes a command in Postgres (the command queue, ``commands.py``); the EA in the trader's terminal
polls it over HTTP, executes it and acknowledges it; the acknowledgement (written by the API process through the
EA-facing bridge, ``bridge.py``) is what the waiting call returns. Deals and order updates the EA reports become
execution reports, journaled in the shared report journal (``reports.py``, ``brokers/journal.py``) and delivered
from here to the order workflows by the shared ``ReportDelivery`` (LISTEN/NOTIFY wakes the delivery at once; a
periodic sweep is the safety net). The same loop marks silent terminals disconnected (``session.py``) and expires
commands nobody picked up. The worker's link to the bridge (its LISTEN connection) is recorded in
``broker_sessions`` like every broker session; the risk check asks each account's terminal (``session.py``).

An acknowledgement that does not come within ``ack_wait_seconds`` is an unknown outcome
(``BrokerUnavailable``): the command stays queued, the activity retries after asking for the order's status,
and the status call waits for that same command rather than sending anything twice. So is a failure of the
bridge's storage (Postgres) during any call: every call runs inside the shared storage-error boundary
(``brokers.base.storage_boundary``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import psycopg

from brokers.base import ReportSink, storage_boundary, storage_errors
from brokers.journal import ReportDelivery
from brokers.journal import ReportJournal as SharedJournal
from brokers.mt5.commands import CommandQueue
from brokers.mt5.config import MT5_CAPABILITIES
from brokers.mt5.parsing import CommandRefused, ack_accepted, ack_reason
from brokers.mt5.reconcile import terminal_positions
from brokers.mt5.reports import ReportJournal
from brokers.mt5.rows import BRIDGE_CHANNEL, BROKER, CommandState, OrderRow
from brokers.mt5.session import link_problem, mark_stale_accounts, register_accounts
from brokers.sessions import SessionRecorder
from core.domain import (
    BrokerAck,
    CancelOrder,
    ExecutionReport,
    OrderStatusReport,
    OrderType,
    PositionReport,
    ReplaceOrder,
    SubmitOrder,
    base_order_id,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from core.settings import Mt5Settings
from core.tasks import stop_tasks
from store import Pool

if TYPE_CHECKING:
    from brokers.mt5.terminal import TerminalExecutor

__all__ = ["Mt5Broker"]

log = logging.getLogger(__name__)


@storage_boundary
class Mt5Broker:
    """MetaTrader 5 through the ExodusBridge EA (or an in-process terminal executor on Windows)."""

    name = "mt5"
    capabilities = MT5_CAPABILITIES

    def __init__(
        self,
        pool: Pool,
        settings: Mt5Settings,
        *,
        database_url: str,
        instruments: InstrumentCatalog | None = None,
        executors: list[TerminalExecutor] | None = None,
    ) -> None:
        """Serve the accounts in ``settings`` through ``pool``; ``database_url`` is for LISTEN."""
        self._pool = pool
        #: The outbox of commands for the terminals.
        self.commands = CommandQueue(pool, settings, instruments=instruments)
        #: The bridge's orders and their reports.
        self.reports = ReportJournal(pool)
        self._instruments = instruments
        self._settings = settings
        self._url = database_url
        self._accounts = sorted(settings.accounts)
        self._executors = list(executors or [])
        #: The accounts' stream of the shared report journal, and its delivery to the order workflows (once started).
        self.journal = SharedJournal(pool, broker=BROKER, streams=self._accounts)
        self.delivery: ReportDelivery | None = None
        #: The worker's link to the bridge (its LISTEN connection), in ``broker_sessions``.
        self._recorder = SessionRecorder(pool, broker=self.name, session=f"bridge accounts {', '.join(self._accounts)}")
        self._recording = False
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Condition()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self, sink: ReportSink) -> None:
        """Start delivering reports (first what a previous process left undelivered), listening and housekeeping."""
        await register_accounts(self._pool, self._settings)
        self.delivery = ReportDelivery(sink, journal=self.journal)
        await self.delivery.start()
        await self._recorder.start()
        self._recording = True
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="mt5-listen"),
            asyncio.create_task(self._housekeeping_forever(), name="mt5-housekeeping"),
        ]
        for executor in self._executors:
            await executor.start()

    async def close(self) -> None:
        """Stop everything (idempotent)."""
        for executor in self._executors:
            await executor.stop()
        tasks, self._tasks = self._tasks, []
        await stop_tasks(tasks, what="MT5 broker")
        if self.delivery is not None:
            await self.delivery.stop()
            self.delivery = None
        if self._recording:
            self._recording = False
            await self._recorder.stop()

    async def drain(self) -> None:
        """Deliver every journaled report now and wait until delivered (tests, shutdown)."""
        async with storage_errors(self.name):
            await self._deliver()
        if self.delivery is not None:
            await self.delivery.drain()

    # ------------------------------------------------------------------------------------------ requests

    async def submit_order(self, order: SubmitOrder) -> BrokerAck:
        """Queue the order for the EA and wait for its acknowledgement."""
        cid = order.cl_ord_id
        try:
            command_id, created = await self.commands.enqueue_new(order)
        except CommandRefused as e:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason=str(e))
        if not created:
            return BrokerAck(
                accepted=False,
                cl_ord_id=cid,
                reason=f"DUPLICATE: order {base_order_id(cid)} was already sent to MT5 account {order.account}",
            )
        state = await self._await(command_id, order.account, what=f"order {cid}")
        return await self._new_ack(state, cid)

    async def cancel_order(self, request: CancelOrder) -> BrokerAck:
        """Withdraw the order if the EA never got it, else queue a cancel and wait for its acknowledgement."""
        cid = request.cl_ord_id
        order_id = base_order_id(cid)
        order = await self.reports.order(order_id)
        if order is None:
            return BrokerAck(
                accepted=False, cl_ord_id=cid, not_found=True, reason="the MT5 bridge never had this order"
            )
        withdrawn = await self.commands.withdraw_new(order_id, reason=request.reason or "cancel requested")
        if withdrawn is not None:
            return BrokerAck(accepted=True, cl_ord_id=cid, reports=[withdrawn])
        await self._await(f"{order_id}:NEW", order["account"], what=f"order {cid}")
        order = await self.reports.order(order_id)
        assert order is not None
        status = order["status"]
        if status == "CANCELED":
            # Canceled already (an earlier cancel whose acknowledgement came late, or the terminal's own): done.
            reports = await self.reports.reports_of(order_id)
            return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=_ticket(order), reports=reports)
        if status in ("FILLED", "EXPIRED", "REJECTED"):
            return await self._refusal(cid, f"too late: the order is already {status} at MT5", order_id)
        if order["type"] == OrderType.MARKET.value:
            return await self._refusal(cid, "too late: an MT5 market order executes at once", order_id)
        command_id = await self.commands.enqueue_cancel(order_id)
        state = await self._await(command_id, order["account"], what=f"the cancel of {cid}")
        reports = await self.reports.reports_of(order_id)
        if state.ack is not None and ack_accepted(state.ack):
            return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=_ticket(order), reports=reports)
        reason = ack_reason(state.ack) if state.ack is not None else f"cancel {state.state.lower()}"
        return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=_ticket(order), reason=reason, reports=reports)

    async def replace_order(self, request: ReplaceOrder) -> BrokerAck:
        """Give a pending order new prices (TRADE_ACTION_MODIFY). MT5 cannot change a working order's volume."""
        cid = request.cl_ord_id
        order_id = base_order_id(cid)
        order = await self.reports.order(order_id)
        if order is None:
            return BrokerAck(
                accepted=False, cl_ord_id=cid, not_found=True, reason="the MT5 bridge never had this order"
            )
        await self._await(f"{order_id}:NEW", order["account"], what=f"order {request.orig_cl_ord_id}")
        order = await self.reports.order(order_id)
        assert order is not None
        if order["status"] in ("FILLED", "CANCELED", "EXPIRED", "REJECTED"):
            return await self._refusal(cid, f"too late: the order is already {order['status']} at MT5", order_id)
        if order["type"] == OrderType.MARKET.value:
            return BrokerAck(accepted=False, cl_ord_id=cid, reason="an MT5 market order cannot be modified")
        if request.qty != order["qty"]:
            return BrokerAck(
                accepted=False,
                cl_ord_id=cid,
                reason=(
                    "MT5 cannot change the volume of a working order (TRADE_ACTION_MODIFY changes prices "
                    "and expiry only): cancel it and send a new order"
                ),
            )
        command_id = await self.commands.enqueue_modify(request)
        state = await self._await(command_id, order["account"], what=f"the modify of {cid}")
        reports = await self.reports.reports_of(order_id)
        if state.ack is not None and ack_accepted(state.ack):
            return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=_ticket(order), reports=reports)
        if state.ack is None:
            reason = f"the MT5 terminal did not pick the modify up within {self._settings.command_ttl_seconds:g} s"
        else:
            reason = ack_reason(state.ack)
        return BrokerAck(accepted=False, cl_ord_id=cid, reason=reason, reports=reports)

    async def get_order_status(self, cl_ord_id: str) -> OrderStatusReport | None:
        """The bridge's view of the order; waits for an outstanding NEW command's acknowledgement first.

        Asked by the client order id of a replace (a MODIFY), it waits for that command's acknowledgement too: until
        the terminal has answered, nobody can tell whether the order has its new prices.
        """
        order_id = base_order_id(cl_ord_id)
        order = await self.reports.order(order_id)
        if order is None:
            return None
        await self.commands.expire_stale_commands([order["account"]])
        await self._await(f"{order_id}:NEW", order["account"], what=f"order {cl_ord_id}")
        modify = f"{cl_ord_id}:MODIFY"
        if cl_ord_id != order_id and await self.commands.command_state(modify) is not None:
            await self._await(modify, order["account"], what=f"the modify of {cl_ord_id}")
        return await self.reports.status_report(order_id)

    async def open_orders(self) -> list[OrderStatusReport]:
        """Every order still working at the terminals of this broker's accounts: the broker sweep's mass status.

        There is nothing to ask the EA: it pushes acks and trade reports (retried until answered, re-sent from
        its cursor after a restart), and the bridge's order rows are what they say. One statement, however many
        orders work; a lookup (``get_order_status``) reads the same rows, with their reports. See the README's
        MT5 section for why the heartbeat's ``orders[]`` is not this list.
        """
        return await self.reports.open_orders(self._accounts)

    async def fills_since(self, since: datetime) -> list[ExecutionReport]:
        """Fills after ``since``."""
        return await self.reports.fills_since(self._accounts, since)

    async def positions(self) -> list[PositionReport]:
        """Net positions per account and symbol as the terminals last reported them."""
        return await terminal_positions(
            self._pool, self._accounts, settings=self._settings, instruments=self._instruments
        )

    # ------------------------------------------------------------------------------------------ internals

    async def _await(self, command_id: str, account: str, *, what: str) -> CommandState:
        """Wait until the command is done; an unknown outcome raises ``BrokerUnavailable``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.ack_wait_seconds
        checked_link = False
        while True:
            state = await self.commands.command_state(command_id)
            if state is None or state.done:
                assert state is not None, f"no command {command_id}"
                return state
            if not checked_link:
                # A silent terminal will not answer: say so at once instead of waiting out the timeout.
                checked_link = True
                problem = await link_problem(self._pool, account)
                if problem is not None:
                    raise BrokerUnavailable(f"{what} is queued for MT5 but {problem}; it stays in flight")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"the MT5 terminal of account {account} has not acknowledged {what} within "
                    f"{self._settings.ack_wait_seconds:g} s ({state.state.lower()}); it stays queued"
                )
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as the wait ends.
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, 0.25)):
                        await self._changed.wait()

    async def _new_ack(self, state: CommandState, cid: str) -> BrokerAck:
        order = await self.reports.order(state.order_id)
        reports = await self.reports.reports_of(state.order_id)
        ticket = _ticket(order) if order else None
        if state.ack is not None and ack_accepted(state.ack):
            return BrokerAck(accepted=True, cl_ord_id=cid, broker_order_id=ticket, reports=reports)
        reason = (order["reason"] if order else None) or (ack_reason(state.ack) if state.ack else "not executed")
        return BrokerAck(accepted=False, cl_ord_id=cid, broker_order_id=ticket, reason=reason, reports=reports)

    async def _refusal(self, cid: str, reason: str, order_id: str) -> BrokerAck:
        order = await self.reports.order(order_id)
        return BrokerAck(
            accepted=False,
            cl_ord_id=cid,
            broker_order_id=_ticket(order) if order else None,
            reason=reason,
            reports=await self.reports.reports_of(order_id),
        )

    async def _deliver(self) -> None:
        if self.delivery is not None and self._accounts:
            await self.delivery.sweep()

    async def _housekeeping_forever(self) -> None:
        interval = self._settings.housekeeping_interval_seconds
        while True:
            try:
                if self._accounts:
                    await self.commands.expire_stale_commands(self._accounts)
                    await mark_stale_accounts(self._pool, self._accounts)
                await self._deliver()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MT5 bridge housekeeping failed; will retry")
            with contextlib.suppress(TimeoutError):  # (not wait_for: see _await)
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    async def _listen_forever(self) -> None:
        backoff = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {BRIDGE_CHANNEL}")
                    backoff = 0.5
                    self._recorder.changed(True, "listening to the bridge")
                    self._wake.set()  # catch up on whatever happened while not listening
                    async for note in conn.notifies():
                        self._on_notify(note.payload)
                        async with self._changed:
                            self._changed.notify_all()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("MT5 bridge LISTEN connection failed (%r); reconnecting in %.1f s", e, backoff)
                self._recorder.changed(False, f"the bridge's LISTEN connection failed: {e!r}"[:500])
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _on_notify(self, payload: str) -> None:
        kind, _, account = payload.partition(":")
        if kind == "reports" and account in self._settings.accounts:
            self._wake.set()


def _ticket(order: OrderRow | None) -> str | None:
    return str(order["ticket"]) if order and order["ticket"] else None
