"""A broker session has exactly one owner: the claim (a Postgres advisory lock) one worker holds."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from core.errors import ConfigError
from tests.conftest import create_database
from worker.ownership import CLAIM_LOCK, BrokerClaim, ClaimLost

pytestmark = pytest.mark.asyncio


async def _drop_connection(url: str, broker: str) -> None:
    # What a Postgres restart does to the holder: its connection (and with it the lock) goes away. Only this
    # database's claim connections (the server is the whole session's), and back only once they have ended and
    # the claim is free: the backend ends a moment after the signal, longer on a loaded machine.
    claimed = "application_name = %s AND datname = current_database() AND pid <> pg_backend_pid()"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity WHERE {claimed}", (f"exodus-claim-{broker}",)
        )
        pids = [row[0] for row in await cur.fetchall()]
        assert pids, f"no connection holds the claim on {broker}"
        async with asyncio.timeout(60):
            while True:
                cur = await conn.execute(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s))"
                    " AND NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
                    " AND objid = hashtext(%s)::oid"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
                    (pids, CLAIM_LOCK, broker),
                )
                row = await cur.fetchone()
                if row is not None and row[0]:
                    return
                await asyncio.sleep(0.05)


async def test_one_owner_per_broker_and_the_claim_frees_when_released(postgres_admin_url: str) -> None:
    url = await create_database(postgres_admin_url, "exodus_claims")
    first, second, other = BrokerClaim(url, "paper"), BrokerClaim(url, "paper"), BrokerClaim(url, "fix")
    try:
        assert await first.try_take()
        await first.check()  # a healthy claim is still held (asked of its connection): nothing changes
        assert first.held
        assert not await second.try_take()
        assert not second.held
        assert await other.try_take()  # another broker is another claim
        with pytest.raises(ConfigError, match="owned by another worker"):
            await second.take(wait_seconds=0.3)
        await first.release()
        assert await second.try_take()
        assert not await first.try_take()
    finally:
        for claim in (first, second, other):
            await claim.release()


async def test_a_dropped_claim_is_taken_again_or_reported_lost(postgres_admin_url: str) -> None:
    url = await create_database(postgres_admin_url, "exodus_claims")
    holder, rival = BrokerClaim(url, "paper"), BrokerClaim(url, "paper")
    try:
        assert await holder.try_take()
        await _drop_connection(url, "paper")
        await holder.check()  # nobody took it meanwhile: taken again on a new connection
        assert holder.held and not await rival.try_take()

        await _drop_connection(url, "paper")
        assert await rival.try_take()  # a standby took it while the holder's connection was down
        with pytest.raises(ClaimLost, match="no longer owns it"):
            await holder.check()
        assert not holder.held
    finally:
        await holder.release()
        await rival.release()


async def test_a_dropped_claim_is_seen_even_before_its_goodbye_reaches_the_worker(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The socket may look quiet for a moment after the server ended the connection (seen in a loaded CI run): the
    # check asks the connection, so it retakes the claim now instead of leaving it free for a standby.
    import worker.ownership

    url = await create_database(postgres_admin_url, "exodus_claims")
    holder, rival = BrokerClaim(url, "paper"), BrokerClaim(url, "paper")
    try:
        assert await holder.try_take()
        await _drop_connection(url, "paper")
        monkeypatch.setattr(worker.ownership, "connection_alive", lambda conn: True)  # the goodbye not read yet
        await holder.check()
        assert holder.held and not await rival.try_take()
    finally:
        await holder.release()
        await rival.release()


async def test_a_healthy_claim_of_every_broker_is_seen_held(postgres_admin_url: str) -> None:
    # The check finds the lock by the broker's hash, which is negative for some names (an oid wraps it).
    url = await create_database(postgres_admin_url, "exodus_claims")
    claims = [BrokerClaim(url, name) for name in ("paper", "fix", "mt5", "alpaca", "oanda", "kraken", "ib", "x" * 40)]
    try:
        for claim in claims:
            assert await claim.try_take()
            await claim.check()
            assert claim.held, claim.broker
    finally:
        for claim in claims:
            await claim.release()


async def test_a_released_claim_is_free_before_its_connection_has_ended(
    postgres_admin_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Closing a connection frees its lock only once its server process has ended, later on a loaded machine (the
    # close is not waited for here: the connection stays open): release unlocks first, so a standby takes it now.
    url = await create_database(postgres_admin_url, "exodus_claims")
    holder, rival = BrokerClaim(url, "paper"), BrokerClaim(url, "paper")
    assert await holder.try_take()
    conn = holder._conn
    assert conn is not None
    closed: list[bool] = []

    async def close_later() -> None:
        closed.append(True)

    monkeypatch.setattr(conn, "close", close_later)
    try:
        await holder.release()
        assert closed and not holder.held
        assert await rival.try_take()
    finally:
        monkeypatch.undo()
        await conn.close()
        await rival.release()
