"""Count what a piece of code asks of Postgres: round trips and statements, from libpq's protocol trace.

``TracingPool`` wraps a pool: every connection it hands out is traced (``PQtrace``) while it is out. A round
trip is one burst of messages from the client followed by the server's answer: the client waits for Postgres
once per burst (a pipeline that sends ten statements and reads their answers together is one round trip; ten
statements each waited for are ten). Statements are the ``Execute`` and simple ``Query`` messages sent.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from psycopg import pq

from store import Conn, Pool

__all__ = ["Trace", "TracingPool", "traced"]


@dataclass
class Trace:
    """What one connection sent while traced."""

    lines: list[str] = field(default_factory=list)
    #: Statements the connection had prepared before the trace began (name -> text): their Parse is not traced.
    prepared: dict[str, str] = field(default_factory=dict)

    def _bursts(self) -> list[list[str]]:
        """The client's messages, one list per burst (a burst ends when the server answers)."""
        bursts: list[list[str]] = []
        sending = False
        for line in self.lines:
            parts = line.split("\t", 3)
            if parts[0] == "F":
                if not sending:
                    bursts.append([])
                bursts[-1].append(parts[2].strip() if len(parts) > 2 else "")
            sending = parts[0] == "F"
        return bursts

    @property
    def round_trips(self) -> int:
        """Bursts of client messages each answered by the server (the client waited once per burst).

        Not counted: psycopg preparing a statement (a named ``Parse`` and ``Sync`` alone), which it does once per
        connection and statement, the ``prepare_threshold``-th time the statement runs there (``preparations``).
        """
        return len(self._bursts()) - self.preparations

    @property
    def preparations(self) -> int:
        """Bursts that only prepared a statement (once per connection and statement)."""
        return sum(1 for burst in self._bursts() if set(burst) == {"Parse", "Sync"})

    @property
    def statements(self) -> list[str]:
        """The statements executed, in order (their text, from the Parse of their prepared or unnamed statement)."""
        out: list[str] = []
        texts = dict(self.prepared)
        bound = ""
        for line in self.lines:
            parts = line.split("\t", 3)
            if len(parts) < 3 or parts[0] != "F":
                continue
            message, rest = parts[2].strip(), parts[3] if len(parts) > 3 else ""
            if message == "Parse" and (m := _PARSE.match(rest)):
                texts[m[1]] = m[2]
            elif message == "Bind" and (m := _BIND.match(rest)):
                bound = texts.get(m[1], m[1])
            elif message == "Execute":
                out.append(bound)
            elif message == "Query":
                out.append(rest.strip().strip('"'))
        return out


#: ``Parse "name" "text" nparams`` and ``Bind "portal" "name" ...`` as libpq's trace prints them.
_PARSE = re.compile(r'\s*"([^"]*)" "(.*)" \d+', re.S)
_BIND = re.compile(r'\s*"[^"]*" "([^"]*)"')


@contextlib.asynccontextmanager
async def traced(conn: Conn) -> AsyncIterator[Trace]:
    """Trace ``conn`` inside the block; the ``Trace`` is filled when the block ends."""
    # psycopg's cache of the connection's prepared statements (private: the trace needs their text only).
    names = getattr(getattr(conn, "_prepared", None), "_names", {})
    trace = Trace(prepared={name.decode(): key[0].decode() for key, name in names.items()})
    with tempfile.TemporaryFile("w+") as f:
        conn.pgconn.trace(os.dup(f.fileno()))
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield trace
        finally:
            conn.pgconn.untrace()
            f.seek(0)
            for line in f.read().splitlines():
                if line.startswith(("F\t", "B\t")) or not trace.lines:
                    trace.lines.append(line)
                else:  # a statement's text spans lines: the message goes on
                    trace.lines[-1] += "\n" + line


class TracingPool:
    """A pool whose connections are traced while handed out; ``traces`` holds one ``Trace`` per checkout."""

    def __init__(self, pool: Pool) -> None:
        """Hand out ``pool``'s connections."""
        self._pool = pool
        self.traces: list[Trace] = []

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A traced connection of the wrapped pool."""
        async with self._pool.connection() as conn, traced(conn) as trace:
            self.traces.append(trace)
            yield conn

    @property
    def round_trips(self) -> int:
        """Round trips of every checkout so far."""
        return sum(t.round_trips for t in self.traces)
