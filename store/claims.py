"""Broker claims: which worker owns a broker session (an advisory lock per broker; ``worker/ownership.py``)."""

from __future__ import annotations

from store import Conn

__all__ = ["CLAIM_LOCK", "release_claim", "still_held", "try_claim"]

#: The first key of every broker claim (the second is ``hashtext(broker)``).
CLAIM_LOCK = 0x42524B52  # "BRKR"


async def try_claim(conn: Conn, broker: str) -> bool:
    """Take ``broker``'s claim on ``conn`` (held until the connection ends) unless another session holds it."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS taken", (CLAIM_LOCK, broker))
    row = await cur.fetchone()
    return bool(row and row["taken"])


async def still_held(conn: Conn, broker: str) -> bool:
    """Whether ``conn`` (the claim's connection) still holds ``broker``'s claim: a round trip to the server."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        " AND classid = %s AND objid = hashtext(%s)::oid AND granted) AS held",
        (CLAIM_LOCK, broker),
    )
    row = await cur.fetchone()
    return bool(row and row["held"])


async def release_claim(conn: Conn, broker: str) -> None:
    """Give ``broker``'s claim up on ``conn``: free when this returns.

    Closing the connection frees it too, but only once the connection's server process has ended, a moment later.
    """
    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (CLAIM_LOCK, broker))
