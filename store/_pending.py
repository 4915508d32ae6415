"""A statement sent in pipeline mode whose result is read later.

In pipeline mode (``core.db.pipelined_transaction``) a statement goes out when it is executed, and the caller
waits for the server only when it reads a result; reading one result brings back every result sent before it.
So a booking sends its statements that need an answer first, and reads their answers together: one round trip
for all of them instead of one each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from psycopg import AsyncCursor
from psycopg.rows import DictRow

__all__ = ["Pending"]

T = TypeVar("T")


class Pending(Generic[T]):
    """The answer of a statement already sent: ``await result()`` reads it (waiting for it if need be)."""

    def __init__(
        self, cursor: AsyncCursor[DictRow] | None, read: Callable[[AsyncCursor[DictRow]], Awaitable[T]], empty: T
    ) -> None:
        """``read`` turns the cursor into the answer; no cursor (nothing was sent) answers ``empty``."""
        self._cursor = cursor
        self._read = read
        self._empty = empty

    async def result(self) -> T:
        """The statement's answer."""
        if self._cursor is None:
            return self._empty
        return await self._read(self._cursor)
