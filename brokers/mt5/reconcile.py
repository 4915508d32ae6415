"""Reconciliation: the terminal's positions and working orders compared with the ledger.

On every (re)connect and EA restart, the EA-facing bridge runs ``reconcile`` in the heartbeat's transaction:
each difference becomes a reconciliation break (``POSITION_MISMATCH``, ``ORDER_NOT_AT_TERMINAL``,
``UNKNOWN_ORDER_AT_TERMINAL``) and is returned to the EA in the heartbeat's answer. The worker's adapter reports the
terminals' net positions (``terminal_positions``) from the same arithmetic.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from brokers.mt5 import tables
from brokers.mt5.parsing import fallback_contract_size, plain
from brokers.mt5.protocol import Heartbeat, Mt5
from brokers.mt5.rows import BROKER
from core.domain import OrderSide, OrderStatus, PositionReport
from core.instruments import InstrumentCatalog
from core.settings import Mt5Settings
from store import Pool, reports

__all__ = ["reconcile", "terminal_net", "terminal_positions"]


async def terminal_net(
    conn: AsyncConnection[Any],
    account: str,
    positions: list[dict[str, Any]],
    *,
    settings: Mt5Settings,
    instruments: InstrumentCatalog | None,
) -> dict[str, Decimal]:
    """Net units per Exodus symbol of the terminal's ``positions`` (as a heartbeat reports them)."""
    specs = await tables.symbols(conn, account)
    by_broker = {r["broker_symbol"]: (r["symbol"], r["contract_size"]) for r in specs}
    by_base = {r["symbol"]: r["contract_size"] for r in specs}
    net: dict[str, Decimal] = {}
    for p in positions:
        base = p.get("base_symbol") or by_broker.get(p["symbol"], (p["symbol"], None))[0]
        size = by_base.get(base) or fallback_contract_size(base, settings, instruments)
        sign = 1 if int(p["type"]) == Mt5.POSITION_TYPE_BUY else -1
        net[base] = net.get(base, Decimal(0)) + sign * Decimal(str(p["volume"])) * size
    return {k: plain(v) for k, v in net.items()}


async def reconcile(
    conn: AsyncConnection[Any],
    account: str,
    hb: Heartbeat,
    *,
    settings: Mt5Settings,
    instruments: InstrumentCatalog | None,
) -> list[str]:
    """Compare the terminal's positions and working orders with the ledger; record the differences."""
    breaks: list[tuple[str, str, str | None]] = []
    terminal = await terminal_net(
        conn, account, [p.model_dump(mode="json") for p in hb.positions], settings=settings, instruments=instruments
    )
    # One statement, so one snapshot: fills the order workflows have booked, plus fills the bridge knows
    # that are still on their way to the ledger (counting them keeps a reconnect from reporting a break
    # that heals a second later). Two queries could miss a fill booked between them.
    ledger: dict[str, Decimal] = {}
    in_flight = 0
    for fill in await reports.net_fills(conn, broker=BROKER, account=account, stream=account):
        sign = 1 if fill["side"] == OrderSide.BUY.value else -1
        ledger[fill["symbol"]] = ledger.get(fill["symbol"], Decimal(0)) + sign * fill["qty"]
        in_flight += bool(fill["in_flight"])
    for symbol in sorted(set(terminal) | set(ledger)):
        t, led = terminal.get(symbol, Decimal(0)), plain(ledger.get(symbol, Decimal(0)))
        if t != led:
            breaks.append(
                (
                    "POSITION_MISMATCH",
                    f"POSITION_MISMATCH: account {account} {symbol}: terminal {t:f}, ledger {led:f}"
                    + (f" ({in_flight} fill(s) in flight)" if in_flight else ""),
                    None,
                )
            )
    working = {o.ticket for o in hb.orders}
    known = set()
    in_ledger = await tables.working_pending_orders(
        conn, account, [OrderStatus.ACCEPTED.value, OrderStatus.PARTIALLY_FILLED.value]
    )
    for row in in_ledger:
        known.add(row["ticket"])
        if row["ticket"] not in working:
            breaks.append(
                (
                    "ORDER_NOT_AT_TERMINAL",
                    f"ORDER_NOT_AT_TERMINAL: account {account} order {row['order_id']} (ticket {row['ticket']}) "
                    f"is {row['status']} in the ledger but not working at the terminal",
                    row["order_id"],
                )
            )
    for o in hb.orders:
        if o.ticket not in known:
            if not await tables.ticket_known(conn, account, o.ticket):
                breaks.append(
                    (
                        "UNKNOWN_ORDER_AT_TERMINAL",
                        f"UNKNOWN_ORDER_AT_TERMINAL: account {account} ticket {o.ticket} ({o.symbol}, "
                        f"comment {o.comment!r}) works at the terminal but the bridge never sent it",
                        None,
                    )
                )
    for kind, detail, order_id in breaks:
        await tables.add_break(conn, kind, detail, order_id=order_id)
    return [detail for _, detail, _ in breaks]


async def terminal_positions(
    pool: Pool, accounts: list[str], *, settings: Mt5Settings, instruments: InstrumentCatalog | None
) -> list[PositionReport]:
    """Net positions (units) per account and symbol, from each terminal's last heartbeat."""
    out: list[PositionReport] = []
    async with pool.connection() as conn:
        for account in accounts:
            positions = await tables.account_positions(conn, account)
            if positions is None:
                continue
            net = await terminal_net(conn, account, positions, settings=settings, instruments=instruments)
            out.extend(PositionReport(broker=BROKER, account=account, symbol=s, qty=q) for s, q in sorted(net.items()))
    return out
