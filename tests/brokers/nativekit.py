"""What the native order-list tests over a broker's stack share (Alpaca's order classes, IB's OCA groups).

The lists go through the REST API of a broker's end-to-end stack (``tests/brokers/<broker>/test_<broker>_workflow.py``
builds it): :class:`NativeLists` writes a list's body for one broker, :func:`post_list` sends it, :func:`until`
waits for its view to get somewhere, :func:`states` reads its legs' states, :func:`desk` sets a test's market and
desk up, and :func:`reservations_released` waits until the risk reservations of orders are released.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, Protocol

import httpx
from psycopg_pool import AsyncConnectionPool

from tests.brokers.venuekit import eventually
from tests.harness import register_accounts, unique

__all__ = ["NativeLists", "desk", "post_list", "reservations_released", "states", "until"]


class NativeLists:
    """The bodies of native lists of AAPL orders, each leg sent to ``broker``."""

    def __init__(self, broker: str) -> None:
        self.broker = broker

    def leg(self, name: str, role: str, side: str, **terms: Any) -> dict[str, Any]:
        """One leg of 10 GTC (a limit unless ``terms`` says otherwise)."""
        return {
            "name": name,
            "role": role,
            "symbol": "AAPL",
            "side": side,
            "qty": 10,
            "timeInForce": "GTC",
            **terms,
            "broker": self.broker,
        }

    def bracket(self, client: str, entry_price: str, tp: str, sl: str) -> dict[str, Any]:
        """A BUY limit entry with a SELL limit take-profit at ``tp`` and a SELL stop-loss at ``sl``."""
        return {
            "clientId": client,
            "clientListId": unique("br"),
            "contingency": "BRACKET",
            "legs": [
                self.leg("entry", "PARENT", "BUY", price=entry_price),
                self.leg("tp", "EXIT", "SELL", price=tp, reduceOnly=True),
                self.leg("sl", "EXIT", "SELL", type="STOP", stopPrice=sl, reduceOnly=True),
            ],
        }

    def oco(self, client: str, *legs: dict[str, Any]) -> dict[str, Any]:
        """An OCO of ``legs`` (each from :meth:`leg`)."""
        return {"clientId": client, "clientListId": unique("oco"), "contingency": "OCO", "legs": list(legs)}


async def post_list(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """POST the list; its id (201 asserted)."""
    r = await http.post("/api/v1/order-lists", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["listId"])


async def until(http: httpx.AsyncClient, list_id: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    """The list's view once ``check(view)`` holds (an ``AssertionError`` with the last view after ``timeout``)."""
    view: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                view = (await http.get(f"/api/v1/order-lists/{list_id}")).json()
                if check(view):
                    return dict(view)
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"list {list_id} never got there: {view}") from None


def states(view: dict[str, Any]) -> dict[str, str]:
    """Each leg's status by its name."""
    return {leg["name"]: leg["status"] for leg in view["legs"]}


class _Venue(Protocol):
    async def set_mid(self, symbol: str, mid: Decimal) -> None: ...


class _Stack(Protocol):
    @property
    def pool(self) -> AsyncConnectionPool: ...

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]: ...


class _BrokerStack(Protocol):
    @property
    def venue(self) -> _Venue: ...

    @property
    def stack(self) -> _Stack: ...


async def desk(s: _BrokerStack, mid: str = "190.00") -> str:
    """Put AAPL's mid at ``mid`` and register a new desk (client) with its accounts; the desk's id."""
    await s.venue.set_mid("AAPL", Decimal(mid))
    client = unique("desk")
    await register_accounts(s.stack.pool, client)
    return client


async def reservations_released(stack: _Stack, order_ids: list[str]) -> None:
    """Wait until none of ``order_ids`` holds an unreleased risk reservation."""

    async def released() -> bool:
        rows = await stack.fetch(
            "SELECT order_id FROM risk_reservations WHERE order_id = ANY(%s) AND released_at IS NULL", order_ids
        )
        return rows == []

    await eventually(released)
