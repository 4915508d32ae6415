"""The Postgres journal of the simulated venue: idempotent saves, and one owner even across lost connections."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal as D

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from core.domain import CancelOrder, OrderSide, OrderType, SubmitOrder, TimeInForce, utcnow
from core.errors import ConfigError
from sim.feed import PriceFeed
from sim.journal import PostgresVenueJournal
from sim.matching import MatchingEngine
from tests.harness import static_instruments
from tests.pgtrace import TracingPool
from tests.waiting import until

pytestmark = pytest.mark.asyncio


def engine() -> MatchingEngine:
    instruments = list(static_instruments())
    return MatchingEngine(PriceFeed(instruments, seed=1), instruments, venue="paper", clock=utcnow)


def order(cid: str) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=cid,
        account="a",
        symbol="AAPL",
        side=OrderSide.BUY,
        type=OrderType.MARKET,
        time_in_force=TimeInForce.GTC,
        qty=D(10),
    )


async def terminate_lock_connection(pool: AsyncConnectionPool, journal: PostgresVenueJournal) -> None:
    assert journal._lock_conn is not None
    pid = journal._lock_conn.info.backend_pid
    # As the database's owner, as an operator would: the application role may not end the journal's connection.
    async with await psycopg.AsyncConnection.connect(journal._url, autocommit=True) as conn:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    await asyncio.sleep(0.2)  # the server closes the socket


async def test_saving_the_same_engine_call_twice_records_it_once(pool: AsyncConnectionPool, database_url: str) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue)
    eng = engine()
    cid = "EX" + uuid.uuid4().hex[:16].upper()
    first = eng.submit(order(cid))
    twin = eng.submit(order(cid))
    assert twin.duplicates
    first.merge(twin)
    await journal.save(first)
    await journal.save(first)  # a commit whose answer was lost is saved again
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM sim_reports WHERE venue = %s", (venue,))
        assert (await cur.fetchone())["n"] == 2  # ACCEPTED, FILL
        cur = await conn.execute("SELECT client_order_id FROM sim_duplicate_submits WHERE venue = %s", (venue,))
        assert [r["client_order_id"] for r in await cur.fetchall()] == [cid]
    orders, pending = await journal.load()
    assert [o.cl_ord_id for o in orders] == [cid] and len(pending) == 2


async def test_journaled_bodies_are_the_models_json_documents(pool: AsyncConnectionPool, database_url: str) -> None:
    # The bodies go in as pydantic's JSON text (no dict built and encoded again): the stored documents must be the
    # ones ``model_dump(mode="json")`` describes (decimals and times as strings, aliases, text beyond ASCII), and
    # load back into equal models.
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue)
    eng = engine()
    cid = "EX" + uuid.uuid4().hex[:16].upper()
    result = eng.submit(order(cid).model_copy(update={"qty": D("12.50")}))
    canceled = eng.submit(order(cid + "L").model_copy(update={"type": OrderType.LIMIT, "price": D("1.00")}))
    canceled.merge(
        eng.cancel(CancelOrder(cl_ord_id=cid + "L", symbol="AAPL", side=OrderSide.BUY, qty=D(10), reason="été ✓ ☃"))
    )
    result.merge(canceled)
    await journal.save(result)
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT venue_order_id, body FROM sim_orders WHERE venue = %s", (venue,))
        bodies = {r["venue_order_id"]: r["body"] for r in await cur.fetchall()}
        cur = await conn.execute("SELECT exec_id, body FROM sim_reports WHERE venue = %s", (venue,))
        reports = {r["exec_id"]: r["body"] for r in await cur.fetchall()}
    assert bodies == {o.venue_order_id: o.model_dump(mode="json") for o in result.changed}
    assert reports == {r.exec_id: r.model_dump(mode="json") for r in result.reports}
    assert any(r.get("reason") == "été ✓ ☃" for r in reports.values())
    orders, pending = await journal.load()
    assert sorted(orders, key=lambda o: o.venue_order_id) == sorted(result.changed, key=lambda o: o.venue_order_id)
    assert sorted(pending, key=lambda r: r.exec_id) == sorted(result.reports, key=lambda r: r.exec_id)


async def test_a_lock_lost_with_its_connection_is_taken_again_before_the_next_save(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue)
    await journal.acquire()
    try:
        await terminate_lock_connection(pool, journal)
        await journal.save(engine().submit(order("EX" + uuid.uuid4().hex[:16].upper())))
        other = PostgresVenueJournal(pool, database_url, venue=venue, lock_wait_seconds=0.3)
        with pytest.raises(ConfigError, match="already run by another process"):
            await other.acquire()
    finally:
        await journal.release()


async def test_a_journal_whose_lock_another_process_took_meanwhile_refuses_to_save(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue)
    other = PostgresVenueJournal(pool, database_url, venue=venue)
    await journal.acquire()
    try:
        await terminate_lock_connection(pool, journal)
        await other.acquire()
        with pytest.raises(ConfigError, match="no longer owns the venue"):
            await journal.save(engine().submit(order("EX" + uuid.uuid4().hex[:16].upper())))
        orders, _ = await other.load()
        assert orders == []
    finally:
        await journal.release()
        await other.release()


async def test_acquire_waits_for_a_lock_that_is_released_shortly(pool: AsyncConnectionPool, database_url: str) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    old = PostgresVenueJournal(pool, database_url, venue=venue)
    await old.acquire()
    new = PostgresVenueJournal(pool, database_url, venue=venue, lock_wait_seconds=10)
    waiting = asyncio.create_task(new.acquire())
    await asyncio.sleep(0.5)
    assert not waiting.done()
    await old.release()  # the previous owner's connection goes away (a killed worker)
    await asyncio.wait_for(waiting, 5)
    await new.release()


async def test_a_save_waits_for_postgres_once(pool: AsyncConnectionPool, database_url: str) -> None:
    # A submission's save (the order, its two reports) is one transaction in pipeline mode: BEGIN, the
    # statements and COMMIT go out together (psycopg's transaction() in pipeline mode waited four times).
    venue = f"j-{uuid.uuid4().hex[:8]}"
    tracing = TracingPool(pool)
    journal = PostgresVenueJournal(tracing, database_url, venue=venue)  # type: ignore[arg-type]
    await journal.save(engine().submit(order("EX" + uuid.uuid4().hex[:16].upper())))
    [trace] = tracing.traces
    assert trace.round_trips == 1
    assert trace.statements[0] == "BEGIN" and trace.statements[-1] == "COMMIT"
    orders, pending = await journal.load()
    assert len(orders) == 1 and [r.kind.value for r in pending] == ["ACCEPTED", "FILL"]


async def _undelivered(pool: AsyncConnectionPool, venue: str) -> list[str]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT exec_id FROM sim_reports WHERE venue = %s AND delivered_at IS NULL ORDER BY exec_id", (venue,)
        )
        return [r["exec_id"] for r in await cur.fetchall()]


async def _nothing_undelivered(pool: AsyncConnectionPool, venue: str) -> bool:
    return await _undelivered(pool, venue) == []


async def test_delivery_marks_ride_the_next_save(pool: AsyncConnectionPool, database_url: str) -> None:
    # No transaction of their own: the next save writes them in its transaction, in its one round trip.
    venue = f"j-{uuid.uuid4().hex[:8]}"
    tracing = TracingPool(pool)
    journal = PostgresVenueJournal(tracing, database_url, venue=venue, mark_delay=30)  # type: ignore[arg-type]
    eng = engine()
    first = eng.submit(order("EX" + uuid.uuid4().hex[:16].upper()))
    await journal.save(first)
    delivered = [r.exec_id for r in first.reports]
    await journal.mark_delivered(delivered)
    assert len(tracing.traces) == 1  # nothing written yet
    assert sorted(await _undelivered(pool, venue)) == sorted(delivered)
    second = eng.submit(order("EX" + uuid.uuid4().hex[:16].upper()))
    await journal.save(second)
    assert len(tracing.traces) == 2 and tracing.traces[1].round_trips == 1
    assert sorted(await _undelivered(pool, venue)) == sorted(r.exec_id for r in second.reports)
    await journal.release()


async def test_delivery_marks_are_written_alone_when_no_save_comes(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue, mark_delay=0.05)
    result = engine().submit(order("EX" + uuid.uuid4().hex[:16].upper()))
    await journal.save(result)
    await journal.mark_delivered([r.exec_id for r in result.reports])
    await until("the delivery marks written", lambda: _nothing_undelivered(pool, venue))


async def test_pending_delivery_marks_are_written_before_a_load_and_at_release(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    venue = f"j-{uuid.uuid4().hex[:8]}"
    journal = PostgresVenueJournal(pool, database_url, venue=venue, mark_delay=30)
    eng = engine()
    first = eng.submit(order("EX" + uuid.uuid4().hex[:16].upper()))
    await journal.save(first)
    await journal.mark_delivered([first.reports[0].exec_id])
    _, pending = await journal.load()  # a rebuild of the book: what was delivered is not handed out again
    assert [r.exec_id for r in pending] == [first.reports[1].exec_id]
    await journal.mark_delivered([first.reports[1].exec_id])
    await journal.release()
    assert await _undelivered(pool, venue) == []
