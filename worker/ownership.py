"""Which worker owns a broker session: one Postgres advisory lock per broker, held by exactly one worker.

Workers scale out by adding processes: every worker serves the order queue (``exodus-orders``: the workflows
and their local activities), and each broker session is run by exactly one of them, the one holding the
broker's claim. Only the claim's holder builds and starts the broker and polls its task queue
(``exodus-orders-broker-<name>``), so a broker's submissions, cancels and status calls all reach the one process
that holds its session (the paper venue's book, a FIX session, an MT5 bridge's state).

A claim is a session-level advisory lock (``store.claims.try_claim``) on a
connection of its own. Postgres releases it when the holder's connection ends: a killed worker loses its
claims at once, and a standby worker (``EXODUS_WORKER__STANDBY=true``) that lists the same broker takes it
over. A claim whose connection dropped (a Postgres restart) is taken again on a new connection; if another
worker took it meanwhile, the holder has lost the session and must stop using it (``BrokerClaim.check``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg
from psycopg.rows import dict_row

from core.db import connection_alive
from core.errors import ConfigError
from store import Conn
from store.claims import CLAIM_LOCK, release_claim, still_held, try_claim

__all__ = ["CLAIM_LOCK", "BrokerClaim", "ClaimLost"]

log = logging.getLogger(__name__)


class ClaimLost(ConfigError):
    """Another worker took a broker session this worker held (its claim's connection had dropped)."""


class BrokerClaim:
    """The claim on one broker session: held while this worker runs the broker."""

    def __init__(self, url: str, broker: str) -> None:
        """The claim on ``broker``, taken on connections to ``url``."""
        self._url = url
        self.broker = broker
        self._conn: Conn | None = None

    @property
    def held(self) -> bool:
        """Whether this worker took the claim (and has not released it)."""
        return self._conn is not None

    async def try_take(self) -> bool:
        """Take the claim if nobody holds it; True when this worker holds it now."""
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, row_factory=dict_row, application_name=f"exodus-claim-{self.broker}"
        )
        try:
            taken = await try_claim(conn, self.broker)
        except BaseException:
            await conn.close()
            raise
        if not taken:
            await conn.close()
            return False
        old, self._conn = self._conn, conn
        if old is not None:
            await old.close()
        return True

    async def take(self, *, wait_seconds: float) -> None:
        """Take the claim, waiting up to ``wait_seconds`` for a holder that is going away; else ``ConfigError``."""
        deadline = time.monotonic() + wait_seconds
        delay = 0.2
        while not await self.try_take():
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"broker {self.broker!r} is owned by another worker on this database; each broker session has "
                    "exactly one owner (remove it from this worker's EXODUS_WORKER__BROKERS, or set "
                    "EXODUS_WORKER__STANDBY=true to take it over when its owner stops)"
                )
            log.info("broker %s: another worker holds its claim; retrying in %.1fs", self.broker, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def check(self) -> None:
        """Make sure the claim is still held: take it again on a new connection if the old one dropped.

        Raises:
            ClaimLost: another worker took the claim while this one's connection was down.
        """
        if self._conn is None or await self._answers(self._conn):
            return
        log.warning("broker %s: the connection holding its claim was lost; taking the claim again", self.broker)
        if not await self.try_take():
            await self.release()
            raise ClaimLost(
                f"broker {self.broker!r}: another worker took its session while this one had lost its claim's "
                "connection; this worker no longer owns it"
            )

    async def _answers(self, conn: Conn) -> bool:
        """Whether the claim's connection still answers and holds the claim (a round trip).

        A dropped connection's goodbye may not have reached this process yet, so a quiet socket is not proof; a
        slow answer counts as alive (its lock is still held).
        """
        if not connection_alive(conn):
            return False
        try:
            return await asyncio.wait_for(still_held(conn, self.broker), 5)
        except TimeoutError:
            return True
        except psycopg.Error:
            return False

    async def release(self) -> None:
        """Give the claim up: unlocked before its connection closes, so another worker can take it at once.

        Closing alone frees the lock only once the server process of the connection has ended, a moment later
        (longer on a loaded machine): a ``try_take`` right after would still find it held. A connection that no
        longer answers (within 5 s) is just closed.
        """
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                await asyncio.wait_for(release_claim(conn, self.broker), 5)
        finally:
            await conn.close()
