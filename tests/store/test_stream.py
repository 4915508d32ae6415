"""``store/stream.py`` and migration 0021: what is booked is captured, numbered in commit order, and selected."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg.rows import dict_row

from core.auth import ALL, Scope
from core.domain import OrderEvent, OrderStatus
from store import Conn, Pool
from store.breaks import add_break, add_unmatched_report
from store.orders import write_order
from store.risk import set_trading_state
from store.stream import Selection, StreamRow, head, last_seq, listen, read_after
from store.timeline import write_events
from tests.store.kit import booked, decided

pytestmark = pytest.mark.asyncio


def ev(seq: int, kind: str, status: OrderStatus = OrderStatus.ACCEPTED, **data: str) -> OrderEvent:
    return OrderEvent(seq=seq, at=datetime.now(UTC), kind=kind, status=status, detail=kind.lower(), data=data)


async def _events(conn: Conn, order_id: str, version: int, *events: OrderEvent) -> None:
    await write_events(conn, order_id=order_id, version=version, events=list(events))


async def _after(db: Pool, seq: int) -> list[StreamRow]:
    async with db.connection() as conn:
        return await read_after(conn, seq, limit=10000)


async def test_order_events_are_captured_with_their_order(db: Pool) -> None:
    async with db.connection() as conn:
        start = await last_seq(conn)
        order = await decided(conn, client_id="cap-client", account="cap-acct", symbol="AAPL")
        await _events(conn, order.order_id, 2, ev(1, "RECEIVED", OrderStatus.RECEIVED), ev(2, "ACCEPT"))
        # The same events again (a retried booking) are not new; a renumbered one is.
        await _events(conn, order.order_id, 2, *(await _same(conn, order.order_id)))
        await _events(conn, order.order_id, 2, ev(2, "CANCEL_REQUESTED"))
    rows = await _after(db, start)
    assert [r["kind"] for r in rows] == ["RECEIVED", "ACCEPT", "CANCEL_REQUESTED"]
    assert [r["seq"] for r in rows] == [start + 1, start + 2, start + 3]
    first = rows[0]
    assert (first["topic"], first["order_id"], first["client_id"], first["account"], first["symbol"]) == (
        "order",
        order.order_id,
        "cap-client",
        "cap-acct",
        "AAPL",
    )
    assert first["broker"] == order.broker
    assert first["data"]["orderSeq"] == 1 and first["data"]["status"] == "RECEIVED"
    assert first["data"]["order"]["clientOrderId"] == order.client_order_id


async def test_an_order_event_is_captured_whole_and_announced_with_its_number(db: Pool) -> None:
    # Migration 0043 captures an order event in one statement: the row, its payload and the NOTIFY stay 0021's.
    assert isinstance(db.conninfo, str)
    async with await psycopg.AsyncConnection.connect(db.conninfo, autocommit=True, row_factory=dict_row) as listener:
        await listen(listener)
        async with db.connection() as conn:
            order = await decided(conn, client_id="whole-client", account="whole-acct", symbol="MSFT")
            start = await last_seq(conn)
            await write_order(
                conn, booked(order, version=1, status=OrderStatus.ACCEPTED, broker_order_id="B-1"), booking=True
            )
            await _events(conn, order.order_id, 1, ev(1, "ACCEPT", exec_id="x-1"))
        payloads: list[str] = []
        async with asyncio.timeout(5):
            async for n in listener.notifies():
                payloads.append(n.payload)
                if n.payload == str(start + 1):
                    break
    [row] = await _after(db, start)
    assert payloads[-1] == str(start + 1) == str(row["seq"])
    assert row["data"] == {
        "orderSeq": 1,
        "at": row["data"]["at"],
        "status": "ACCEPTED",
        "detail": "accept",
        "actor": None,
        "data": {"exec_id": "x-1"},
        "order": {
            "clientOrderId": order.client_order_id,
            "side": order.side.value,
            "type": order.type.value,
            "qty": str(order.qty),
            "price": None,
            "stopPrice": None,
            "status": "ACCEPTED",
            "filledQty": "0",
            "avgPrice": None,
            "version": 1,
            "brokerOrderId": "B-1",
        },
    }
    assert (row["client_id"], row["account"], row["symbol"], row["broker"]) == (
        "whole-client",
        "whole-acct",
        "MSFT",
        order.broker,
    )


async def _same(conn: Conn, order_id: str) -> list[OrderEvent]:
    cur = await conn.execute(
        "SELECT seq, at, kind, status, detail, actor, data FROM order_events WHERE order_id = %s", (order_id,)
    )
    return [OrderEvent.model_validate(r) for r in await cur.fetchall()]


async def test_trading_states_breaks_and_unmatched_reports_are_captured(db: Pool) -> None:
    async with db.connection() as conn:
        start = await last_seq(conn)
        await set_trading_state(conn, scope="ACCOUNT", key="cap-acct", state="HALTED", reason="why", actor="ops")
        await set_trading_state(
            conn, scope="BROKER", key="paper", state="HALTED", reason="3 rejects", actor="circuit-breaker"
        )
        await set_trading_state(conn, scope="GLOBAL", key="", state="ACTIVE", reason="ok", actor="ops")
        order = await decided(conn, client_id="cap-client", account="cap-acct")
        assert await add_break(conn, order_id=order.order_id, broker="paper", kind="QTY", detail="qty differs")
        await conn.execute(
            "UPDATE reconciliation_breaks SET resolved_at = now() WHERE order_id = %s", (order.order_id,)
        )
        await add_unmatched_report(
            conn, broker="paper", exec_id="cap-x1", cl_ord_id="nobody", reason="UNKNOWN_ORDER", report={}
        )
    rows = await _after(db, start)
    assert [(r["topic"], r["kind"]) for r in rows] == [
        ("trading_state", "TRADING_STATE"),
        ("trading_state", "CIRCUIT_BREAKER"),
        ("trading_state", "TRADING_STATE"),
        ("break", "BREAK"),
        ("break", "BREAK_RESOLVED"),
        ("unmatched", "UNMATCHED_REPORT"),
    ]
    assert (rows[0]["account"], rows[0]["broker"], rows[0]["data"]["state"]) == ("cap-acct", None, "HALTED")
    assert (rows[1]["account"], rows[1]["broker"]) == (None, "paper")
    assert (rows[3]["client_id"], rows[3]["account"], rows[3]["data"]["breakKind"]) == ("cap-client", "cap-acct", "QTY")
    assert rows[5]["data"]["clientOrderId"] == "nobody"


async def test_numbers_follow_commit_order_so_a_reader_skips_nothing(db: Pool) -> None:
    # T1 writes first and commits last. With numbers taken at insert time (a plain sequence), T1's row would
    # get the lower number and appear behind a reader that already read T2's: skipped for good.
    async with db.connection() as c1, db.connection() as c2, db.connection() as reader:
        order = await decided(c1, account="order-acct")
        await write_order(c1, booked(order, version=2, status=OrderStatus.ACCEPTED), booking=True)
        start = await last_seq(reader)
        async with c1.transaction():
            await _events(c1, order.order_id, 2, ev(1, "RECEIVED", OrderStatus.RECEIVED))
            async with c2.transaction():
                await set_trading_state(c2, scope="SYMBOL", key="ORDER-T2", state="HALTED", reason="t2", actor="ops")
            seen = await read_after(reader, start, limit=100)
            assert [r["kind"] for r in seen] == ["TRADING_STATE"]
            position = seen[-1]["seq"]
        later = await read_after(reader, position, limit=100)
    assert [r["kind"] for r in later] == ["RECEIVED"]
    assert later[0]["seq"] == position + 1


async def test_a_rolled_back_transaction_leaves_no_number_behind(db: Pool) -> None:
    async with db.connection() as conn:
        start = await head(conn)

        class Abort(Exception):
            pass

        with pytest.raises(Abort):
            async with conn.transaction():
                await set_trading_state(conn, scope="SYMBOL", key="ROLLBACK", state="HALTED", reason="x", actor="ops")
                await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # take the number now, then roll back
                assert await head(conn) == start + 1
                raise Abort
        await set_trading_state(conn, scope="SYMBOL", key="ROLLBACK", state="ACTIVE", reason="y", actor="ops")
        assert await head(conn) == start + 1
    rows = await _after(db, start)
    assert [r["data"]["state"] for r in rows] == ["ACTIVE"]


async def test_concurrent_writers_and_a_polling_reader_see_every_number_once_in_order(db: Pool) -> None:
    async with db.connection() as conn:
        start = await last_seq(conn)
    writers, each = 6, 15
    done = asyncio.Event()

    async def write(w: int) -> None:
        rnd = random.Random(w)
        for i in range(each):
            async with db.connection() as c, c.transaction():
                await set_trading_state(c, scope="SYMBOL", key=f"CONC-{w}", state="HALTED", reason=str(i), actor="t")
                await asyncio.sleep(rnd.random() * 0.01)  # commits interleave with other writers' statements

    seen: list[int] = []

    async def read() -> None:
        position = start
        while True:
            finished = done.is_set()
            async with db.connection() as c:
                rows = await read_after(c, position, limit=1000)
            for r in rows:
                seen.append(r["seq"])
                position = r["seq"]
            if finished and not rows:
                return
            await asyncio.sleep(0.001)

    reader = asyncio.create_task(read())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await reader
    mine = [s for s in seen]
    assert mine == list(range(start + 1, start + 1 + writers * each))


def _rows() -> list[StreamRow]:
    now = datetime.now(UTC)
    rows: list[StreamRow] = []
    seq = itertools.count(1)
    for topic, kind in (("order", "FILL"), ("order", "ACCEPT"), ("break", "BREAK"), ("unmatched", "UNMATCHED_REPORT")):
        for client, account, symbol, broker in itertools.product(
            ("c1", "c2", None), ("a1", "a2", None), ("AAPL", None), ("paper", "fix", None)
        ):
            if topic == "order" and None in (client, account, symbol, broker):
                continue
            rows.append(_row(next(seq), now, topic, kind, client, account, symbol, broker))
    for scope, key in (("GLOBAL", ""), ("ACCOUNT", "a1"), ("ACCOUNT", "a2"), ("SYMBOL", "AAPL"), ("BROKER", "fix")):
        rows.append(
            _row(
                next(seq),
                now,
                "trading_state",
                "TRADING_STATE",
                None,
                key if scope == "ACCOUNT" else None,
                key if scope == "SYMBOL" else None,
                key if scope == "BROKER" else None,
            )
        )
    return rows


def _row(
    seq: int,
    at: datetime,
    topic: str,
    kind: str,
    client: str | None,
    account: str | None,
    symbol: str | None,
    broker: str | None,
) -> StreamRow:
    return StreamRow(
        seq=seq,
        booked_at=at,
        topic=topic,
        kind=kind,
        order_id=None,
        client_id=client,
        account=account,
        symbol=symbol,
        broker=broker,
        data={},
    )


SELECTIONS = [
    Selection(Scope.everything()),
    Selection(Scope(clients=["c1"], accounts=["a1"], brokers=ALL)),
    Selection(Scope(clients=ALL, accounts=["a2"], brokers=["paper"])),
    Selection(Scope(clients=[], accounts=[], brokers=[])),
    Selection(Scope.everything(), accounts=frozenset({"a1"})),
    Selection(Scope.everything(), symbols=frozenset({"AAPL"}), kinds=frozenset({"FILL", "TRADING_STATE"})),
    Selection(
        Scope(clients=["c2"], accounts=ALL, brokers=ALL), clients=frozenset({"c1", "c2"}), kinds=frozenset({"BREAK"})
    ),
]


async def test_the_sql_selection_and_the_python_selection_agree(db: Pool) -> None:
    rows = _rows()
    async with db.connection() as conn, conn.transaction():
        # A scratch table of the same shape, so the rows are exactly these (rolled back at the end).
        await conn.execute("CREATE TEMP TABLE scratch_rows (LIKE stream_events INCLUDING DEFAULTS) ON COMMIT DROP")
        for r in rows:
            await conn.execute(
                "INSERT INTO scratch_rows (seq, booked_at, topic, kind, order_id, client_id, account, symbol, broker)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (
                    r["seq"],
                    r["booked_at"],
                    r["topic"],
                    r["kind"],
                    None,
                    r["client_id"],
                    r["account"],
                    r["symbol"],
                    r["broker"],
                ),
            )
        for selection in SELECTIONS:
            where, params = selection.where()
            cur = await conn.execute(
                f"SELECT seq FROM scratch_rows WHERE {' AND '.join(where) or 'true'} ORDER BY seq", params
            )
            in_sql = [r["seq"] for r in await cur.fetchall()]
            in_python = [r["seq"] for r in rows if selection.matches(r)]
            assert in_sql == in_python, selection
    # The rules themselves, on a few rows.
    desk = SELECTIONS[1]
    by = {(r["topic"], r["client_id"], r["account"], r["symbol"], r["broker"]): r for r in rows}
    assert desk.matches(by[("order", "c1", "a1", "AAPL", "paper")])
    assert not desk.matches(by[("order", "c2", "a1", "AAPL", "paper")])
    assert not desk.matches(by[("break", None, None, None, "paper")])  # a break of no order: firm-wide only
    assert desk.matches(by[("trading_state", None, None, None, None)])  # GLOBAL concerns everyone
    assert desk.matches(by[("trading_state", None, "a1", None, None)])
    assert not desk.matches(by[("trading_state", None, "a2", None, None)])
    assert SELECTIONS[4].matches(by[("trading_state", None, None, "AAPL", None)])  # a symbol halt concerns a1
