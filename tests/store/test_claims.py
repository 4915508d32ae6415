"""``store/claims.py``: one session at a time holds a broker's claim, until its connection ends."""

from __future__ import annotations

import pytest

from store import Pool
from store.claims import try_claim
from tests.harness import unique

pytestmark = pytest.mark.asyncio


async def test_a_claim_is_held_by_one_session_and_freed_with_its_connection(db: Pool) -> None:
    broker = unique("paper")
    async with db.connection() as first, db.connection() as second:
        assert await try_claim(first, broker)
        assert await try_claim(first, broker)  # the holder may ask again (advisory locks stack per session)
        assert not await try_claim(second, broker)
        assert await try_claim(second, unique("fix"))  # another broker is another claim
        await first.execute("SELECT pg_advisory_unlock_all()")
        assert await try_claim(second, broker)
        await second.execute("SELECT pg_advisory_unlock_all()")
