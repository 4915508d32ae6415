"""The local OANDA venue speaks OANDA's v20 protocol: every answer and stream line is checked against the v20
document (strict: no field it does not define), refusals carry OANDA's reject transactions and reasons, client ids
are deduplicated for pending orders only, a FOK that cannot fill is a 201 with a cancel, 429 above the rate."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from core.instruments import InstrumentCatalog
from devstack.venues.oanda.venue import OandaVenue, VenueServer
from sim.venue import SimVenue
from tests.brokers.oanda.kit import ACCOUNT, KNOWN_SPEC_PROBLEMS, TOKEN, SpecChecker
from tests.harness import unique

D = Decimal


class Client:
    def __init__(self, server: VenueServer, checker: SpecChecker) -> None:
        self.server = server
        self.http = httpx.AsyncClient(
            base_url=f"{server.base_url}/v3/accounts/{ACCOUNT}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            event_hooks=checker.hooks(),
        )

    async def order(self, **terms: Any) -> httpx.Response:
        body: dict[str, Any] = {"type": "MARKET", "instrument": "EUR_USD", "units": "1000", "timeInForce": "FOK"}
        body.update(terms)
        body.setdefault("clientExtensions", {"id": unique("EX")})
        return await self.http.post("/orders", json={"order": body})


@pytest.fixture
async def venue(instruments: InstrumentCatalog) -> AsyncIterator[tuple[Client, SpecChecker]]:
    checker = SpecChecker()
    server = VenueServer(
        OandaVenue(
            SimVenue(instruments, name="oandavenue", tick_interval=0),
            list(instruments),
            token=TOKEN,
            account_id=ACCOUNT,
            heartbeat_seconds=0.2,
            balance=D(100000),
        )
    )
    await server.start()
    client = Client(server, checker)
    try:
        yield client, checker
    finally:
        await client.http.aclose()
        await server.stop()
    assert not checker.problems, "\n".join(checker.problems)
    assert checker.checked


def test_the_spec_problems_are_the_known_ones() -> None:
    assert SpecChecker().spec_problems() == KNOWN_SPEC_PROBLEMS


async def test_a_market_order_fills_and_a_fok_limit_that_cannot_is_a_201_with_a_cancel(
    venue: tuple[Client, SpecChecker],
) -> None:
    c, _ = venue
    r = await c.order()
    assert r.status_code == 201 and r.json()["orderFillTransaction"]["units"] == "1000"
    assert r.json()["orderCreateTransaction"]["id"] == r.json()["orderFillTransaction"]["orderID"]
    r = await c.order(type="LIMIT", price="1.00000", units="2000")  # a buy far below the ask
    assert r.status_code == 201, r.text
    body = r.json()
    assert "orderFillTransaction" not in body and body["orderCancelTransaction"]["reason"] == "INSUFFICIENT_LIQUIDITY"


async def test_refusals_are_reject_transactions_with_oanda_reasons(venue: tuple[Client, SpecChecker]) -> None:
    c, _ = venue
    cases = [
        ({"units": "60000000"}, "UNITS_LIMIT_EXCEEDED"),
        ({"units": "10"}, "UNITS_MIMIMUM_NOT_MET"),
        ({"type": "LIMIT", "price": "1.0850001", "timeInForce": "GTC"}, "PRICE_PRECISION_EXCEEDED"),
        ({"timeInForce": "GTC"}, "TIME_IN_FORCE_INVALID"),
        ({"instrument": "XXX_YYY"}, "INSTRUMENT_UNKNOWN"),
        ({"units": "5000000"}, "INSUFFICIENT_MARGIN"),  # 5.4M USD at 2% > the 100,000 balance
    ]
    for terms, reason in cases:
        r = await c.order(**terms)
        assert r.status_code == 400, (terms, r.text)
        assert r.json()["orderRejectTransaction"]["rejectReason"] == reason and r.json()["errorCode"] == reason
    c.server.venue.halted.add("EURUSD")
    r = await c.order()
    assert r.status_code == 400 and r.json()["errorCode"] == "INSTRUMENT_NOT_TRADEABLE"


async def test_client_ids_are_deduplicated_for_pending_orders_only(venue: tuple[Client, SpecChecker]) -> None:
    c, _ = venue
    cid = unique("EX")
    resting = {"type": "LIMIT", "price": "1.00000", "timeInForce": "GTC", "clientExtensions": {"id": cid}}
    first = await c.order(**resting)
    assert first.status_code == 201
    twin = await c.order(**resting)
    assert twin.status_code == 400 and twin.json()["errorCode"] == "CLIENT_ORDER_ID_ALREADY_EXISTS"
    r = await c.http.put(f"/orders/@{cid}/cancel")
    assert r.status_code == 200 and r.json()["orderCancelTransaction"]["reason"] == "CLIENT_REQUEST"
    r = await c.http.put(f"/orders/@{cid}/cancel")
    assert r.status_code == 404 and r.json()["orderCancelRejectTransaction"]["rejectReason"] == "ORDER_DOESNT_EXIST"
    again = await c.order(**resting)  # the id is free again: a new order
    assert again.status_code == 201
    assert again.json()["orderCreateTransaction"]["id"] != first.json()["orderCreateTransaction"]["id"]
    r = await c.http.get(f"/orders/@{cid}")
    assert (
        r.json()["order"]["state"] == "PENDING"
        and r.json()["order"]["id"] == again.json()["orderCreateTransaction"]["id"]
    )


async def test_replace_cancels_and_creates_and_sinceid_tells_it_in_order(venue: tuple[Client, SpecChecker]) -> None:
    c, _ = venue
    cid = unique("EX")
    start = (await c.http.get("/summary")).json()["lastTransactionID"]
    r = await c.order(type="LIMIT", price="1.00000", timeInForce="GTC", clientExtensions={"id": cid})
    old = r.json()["orderCreateTransaction"]["id"]
    body = {
        "order": {
            "type": "LIMIT",
            "instrument": "EUR_USD",
            "units": "3000",
            "price": "1.01000",
            "timeInForce": "GTC",
            "clientExtensions": {"id": cid + ".1"},
        }
    }
    r = await c.http.put(f"/orders/{old}", json=body)
    assert r.status_code == 201, r.text
    cancel, create = r.json()["orderCancelTransaction"], r.json()["orderCreateTransaction"]
    assert cancel["reason"] == "CLIENT_REQUEST_REPLACED" and cancel["replacedByOrderID"] == create["id"]
    assert create["reason"] == "REPLACEMENT" and create["replacesOrderID"] == old
    txns = (await c.http.get("/transactions/sinceid", params={"id": start})).json()["transactions"]
    assert [t["type"] for t in txns] == ["LIMIT_ORDER", "ORDER_CANCEL", "LIMIT_ORDER"]
    ids = [int(t["id"]) for t in txns]
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_the_stream_sends_transactions_and_heartbeats_as_json_lines(venue: tuple[Client, SpecChecker]) -> None:
    c, checker = venue
    lines: list[bytes] = []
    async with c.http.stream("GET", "/transactions/stream") as response:
        assert response.status_code == 200
        posted = asyncio.create_task(c.order())
        async with asyncio.timeout(5):
            async for line in response.aiter_lines():
                lines.append(line.encode())
                kinds = [json.loads(x)["type"] for x in lines]
                if "ORDER_FILL" in kinds and "HEARTBEAT" in kinds:
                    break
        await posted
    for line in lines:
        checker.check_stream_line(line)
    assert {"MARKET_ORDER", "ORDER_FILL", "HEARTBEAT"} <= {json.loads(x)["type"] for x in lines}


async def test_auth_account_and_rate_limit(venue: tuple[Client, SpecChecker]) -> None:
    c, _ = venue
    async with httpx.AsyncClient(base_url=c.server.base_url) as anonymous:
        r = await anonymous.get(f"/v3/accounts/{ACCOUNT}/summary")
    assert r.status_code == 401 and r.json() == {"errorMessage": "Insufficient authorization to perform request."}
    c.server.venue.rate_limit.limit = 2
    codes = [(await c.http.get("/summary")).status_code for _ in range(4)]
    assert codes.count(429) >= 1 and codes[0] == 200
