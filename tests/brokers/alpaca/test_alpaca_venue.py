"""The local Alpaca venue speaks Alpaca's wire protocol: every answer is checked against Alpaca's OpenAPI document
(``SpecChecker``), errors have Alpaca's shape and codes, the rate limit answers 429 with its headers, the stream
authenticates and listens, and the venue's answers agree with its journal after a restart."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import websockets
from psycopg_pool import AsyncConnectionPool

from core.instruments import InstrumentCatalog
from devstack.venues.alpaca.venue import AlpacaVenue, VenueServer
from sim.journal import PostgresVenueJournal
from sim.venue import SimVenue
from tests.brokers.alpaca.kit import KEY, SECRET, SpecChecker
from tests.harness import unique

D = Decimal


class Client:
    """Plain HTTP to the venue; every answer goes through the spec checker."""

    def __init__(self, server: VenueServer, checker: SpecChecker) -> None:
        self.server = server
        self.checker = checker
        self.http = httpx.AsyncClient(
            base_url=server.base_url,
            headers={"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET},
            event_hooks=checker.hooks(),
        )

    async def order(self, **body: Any) -> httpx.Response:
        payload = {"symbol": "AAPL", "qty": "10", "side": "buy", "type": "market", "time_in_force": "day"}
        payload.update(body)
        payload.setdefault("client_order_id", unique("EX"))
        return await self.http.post("/v2/orders", json=payload)


async def _serve(venue: AlpacaVenue) -> VenueServer:
    server = VenueServer(venue)
    await server.start()
    return server


@pytest.fixture
async def client(instruments: InstrumentCatalog) -> AsyncIterator[Client]:
    venue = AlpacaVenue(
        SimVenue(instruments, name="alpacavenue", tick_interval=0, reject_symbols=["SPY"]),
        list(instruments),
        key_id=KEY,
        secret_key=SECRET,
        initial_cash=D(100_000),
    )
    server = await _serve(venue)
    checker = SpecChecker()
    c = Client(server, checker)
    try:
        yield c
    finally:
        await c.http.aclose()
        await server.stop()
    assert not checker.problems, checker.problems


async def test_every_endpoint_answers_as_the_openapi_document_says(client: Client) -> None:
    market = await client.order(client_order_id="EXA1")
    assert market.status_code == 200 and market.json()["status"] == "filled"
    limit = await client.order(type="limit", limit_price="150", time_in_force="gtc", client_order_id="EXA2")
    assert limit.status_code == 200 and limit.json()["status"] == "new"
    stop = await client.order(type="stop_limit", stop_price="200", limit_price="201", client_order_id="EXA3")
    assert stop.status_code == 200 and stop.json()["stop_price"] == "200"
    oid = limit.json()["id"]
    assert (await client.http.get(f"/v2/orders/{oid}")).json()["client_order_id"] == "EXA2"
    by_cid = await client.http.get("/v2/orders:by_client_order_id", params={"client_order_id": "EXA2"})
    assert by_cid.json()["id"] == oid
    opened = (await client.http.get("/v2/orders", params={"status": "open"})).json()
    assert {o["client_order_id"] for o in opened} == {"EXA2", "EXA3"}
    closed = (await client.http.get("/v2/orders", params={"status": "closed"})).json()
    assert [o["client_order_id"] for o in closed] == ["EXA1"]
    replaced = await client.http.patch(
        f"/v2/orders/{oid}", json={"qty": "5", "limit_price": "151", "client_order_id": "EXA2.1"}
    )
    assert replaced.status_code == 200
    new = replaced.json()
    assert new["id"] != oid and new["replaces"] == oid and new["qty"] == "5" and new["limit_price"] == "151"
    old = (await client.http.get(f"/v2/orders/{oid}")).json()
    assert old["status"] == "replaced" and old["replaced_by"] == new["id"]
    assert (await client.http.delete(f"/v2/orders/{new['id']}")).status_code == 204
    assert (await client.http.get(f"/v2/orders/{new['id']}")).json()["status"] == "canceled"
    account = (await client.http.get("/v2/account")).json()
    assert account["status"] == "ACTIVE" and D(account["cash"]) == D(100_000) - D("10") * D("190.01")
    [position] = (await client.http.get("/v2/positions")).json()
    assert (position["symbol"], position["qty"], position["avg_entry_price"]) == ("AAPL", "10", "190.01")
    [fill] = (await client.http.get("/v2/account/activities/FILL")).json()
    assert (fill["order_id"], fill["qty"], fill["cum_qty"], fill["type"]) == (market.json()["id"], "10", "10", "fill")
    both = (await client.http.get("/v2/account/activities", params={"activity_types": "FILL"})).json()
    assert both == [fill]
    quotes = (await client.http.get("/v2/stocks/quotes/latest", params={"symbols": "AAPL,MSFT,EURUSD"})).json()
    assert set(quotes["quotes"]) == {"AAPL", "MSFT"} and quotes["quotes"]["AAPL"]["bp"] == 189.99
    one = (await client.http.get("/v2/stocks/AAPL/quotes/latest")).json()
    assert one["symbol"] == "AAPL" and one["quote"]["ap"] == 190.01
    checked = {k.rsplit(" ", 2)[0] for k in client.checker.checked}
    assert {"POST", "GET", "PATCH", "DELETE"} <= checked


async def test_errors_have_alpacas_statuses_codes_and_messages(client: Client) -> None:
    await client.order(client_order_id="EXDUP", type="limit", limit_price="150")
    dup = await client.order(client_order_id="EXDUP", type="limit", limit_price="150")
    assert (dup.status_code, dup.json()) == (422, {"code": 40010001, "message": "client_order_id must be unique"})
    unknown = await client.order(symbol="NOPE")
    assert unknown.status_code == 422 and unknown.json() == {"code": 40010001, "message": 'asset "NOPE" not found'}
    assert (await client.order(symbol="EURUSD")).status_code == 422  # Alpaca trades no FX
    subpenny = await client.order(type="limit", limit_price="150.001")
    assert subpenny.status_code == 422 and subpenny.json()["code"] == 42210000
    assert "sub-penny" in subpenny.json()["message"]
    missing = await client.order(type="limit")
    assert missing.status_code == 422 and "limit_price is required" in missing.json()["message"]
    poor = await client.order(qty="1000", type="limit", limit_price="190")
    assert poor.status_code == 403 and poor.json()["code"] == 40310000
    assert poor.json()["message"] == "insufficient buying power"
    assert (await client.http.get(f"/v2/orders/{'0' * 8}-0000-0000-0000-{'0' * 12}")).status_code == 404
    missing_cid = await client.http.get("/v2/orders:by_client_order_id", params={"client_order_id": "EXNONE"})
    assert missing_cid.status_code == 404 and missing_cid.json() == {"code": 40410000, "message": "order not found"}
    filled = (await client.order()).json()
    late = await client.http.delete(f"/v2/orders/{filled['id']}")
    assert late.status_code == 422 and late.json()["code"] == 42210000
    unauthorized = await httpx.AsyncClient(base_url=client.server.base_url).get("/v2/account")
    assert unauthorized.status_code == 401 and unauthorized.json()["code"] == 40110000
    # The engine's own refusal (an injected reject) is an order Alpaca rejected, not an HTTP error.
    rejected = await client.order(symbol="SPY")
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"


async def test_rate_limit_answers_429_with_its_headers(client: Client) -> None:
    client.server.venue.rate_limit.per_minute = 2
    first = await client.http.get("/v2/account")
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    await client.http.get("/v2/account")
    refused = await client.http.get("/v2/account")
    assert refused.status_code == 429 and refused.json()["code"] == 42910000
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    # Market data has its own allowance.
    assert (await client.http.get("/v2/stocks/AAPL/quotes/latest")).status_code == 200


async def _stream(server: VenueServer) -> Any:
    return await websockets.connect(server.base_url.replace("http", "ws", 1) + "/stream")


async def test_stream_authenticates_listens_and_sends_trade_updates(client: Client) -> None:
    ws = await _stream(client.server)
    await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert json.loads(await ws.recv())["data"]["status"] == "unauthorized"  # not authenticated first
    ws = await _stream(client.server)
    await ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": "wrong"}}))
    assert json.loads(await ws.recv()) == {
        "stream": "authorization",
        "data": {"action": "authenticate", "status": "unauthorized"},
    }
    async with await _stream(client.server) as ws:
        await ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}))
        frame = await ws.recv()
        assert isinstance(frame, bytes)  # binary frames, like Alpaca's paper stream
        assert json.loads(frame)["data"]["status"] == "authorized"
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads(await ws.recv()) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
        placed = (await client.order(qty="510")).json()  # fills 500 now (display size), the rest on a step
        events = [json.loads(await asyncio.wait_for(ws.recv(), 5))["data"] for _ in range(2)]
        assert [e["event"] for e in events] == ["new", "partial_fill"]
        fill = events[1]
        assert fill["order"]["id"] == placed["id"] and fill["qty"] == "500" and fill["price"] == "190.01"
        assert fill["order"]["filled_qty"] == "500" and fill["execution_id"] and fill["position_qty"] == "500"
        await client.server.venue.step()
        last = json.loads(await asyncio.wait_for(ws.recv(), 5))["data"]
        assert last["event"] == "fill" and last["qty"] == "10" and last["order"]["status"] == "filled"
        assert last["execution_id"] != fill["execution_id"]
        for event in events + [last]:
            client.checker.check_schema(event["order"], "Order")


async def test_dropped_stream_closes_and_refused_streams_stay_closed(client: Client) -> None:
    venue = client.server.venue
    async with await _stream(client.server) as ws:
        await ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}))
        await ws.recv()
        await ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        await ws.recv()
        assert venue.listening == 1
        await venue.drop_streams()
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    venue.faults.refuse_streams = True
    async with await _stream(client.server) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_faults_drop_stall_fail_and_delay(client: Client) -> None:
    faults = client.server.venue.faults
    faults.latency = 0.3
    started = time.monotonic()
    assert (await client.http.get("/v2/account")).status_code == 200
    assert time.monotonic() - started >= 0.3  # a lower bound only: the machine may be slower, never faster
    faults.latency = 0
    faults.add("drop_after", method="POST", path="/v2/orders")
    with pytest.raises(httpx.RemoteProtocolError):
        await client.order(client_order_id="EXDROP")
    found = await client.http.get("/v2/orders:by_client_order_id", params={"client_order_id": "EXDROP"})
    assert found.status_code == 200  # processed, then the answer was lost
    faults.add("error_before", method="POST", status=503)
    refused = await client.order(client_order_id="EXFAIL")
    assert refused.status_code == 503
    missing = await client.http.get("/v2/orders:by_client_order_id", params={"client_order_id": "EXFAIL"})
    assert missing.status_code == 404  # not processed
    faults.add("error_after", method="POST", status=504)
    assert (await client.order(client_order_id="EXLATE")).status_code == 504
    late = await client.http.get("/v2/orders:by_client_order_id", params={"client_order_id": "EXLATE"})
    assert late.status_code == 200  # processed despite the 504
    faults.add("stall_after", method="POST", seconds=2)
    body = {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    with pytest.raises(httpx.ReadTimeout):
        await client.http.post("/v2/orders", json=body | {"client_order_id": "EXSTALL"}, timeout=0.5)


async def test_checker_catches_an_answer_that_drifted_from_the_document(client: Client) -> None:
    checker = SpecChecker()
    good = (await client.order(type="limit", limit_price="150")).json()
    request = httpx.Request("GET", f"{client.server.base_url}/v2/orders/{good['id']}")
    checker.check(httpx.Response(200, json=good, request=request))
    assert checker.problems == []
    drifted = {k: v for k, v in good.items() if k != "symbol"} | {"status": "working"}
    checker.check(httpx.Response(200, json=drifted, request=request))
    assert len(checker.problems) == 1 and "GET" in checker.problems[0]
    checker.check(httpx.Response(429, json={"message": "slow down"}, request=request))
    assert len(checker.problems) == 2  # no 8-digit code


async def test_venue_answers_agree_with_its_journal_after_a_restart(
    instruments: InstrumentCatalog, pool: AsyncConnectionPool, database_url: str
) -> None:
    key = f"alpaca-venue-{unique()}"

    def venue() -> AlpacaVenue:
        sim = SimVenue(
            instruments,
            name="alpacavenue",
            tick_interval=0,
            journal=PostgresVenueJournal(pool, database_url, venue=key),
        )
        return AlpacaVenue(sim, list(instruments), key_id=KEY, secret_key=SECRET)

    checker = SpecChecker()
    server = await _serve(venue())
    c = Client(server, checker)
    placed = (await c.order(qty="700", type="limit", limit_price="191", client_order_id="EXJ1")).json()
    replaced = (
        await c.http.patch(
            f"/v2/orders/{placed['id']}", json={"qty": "100", "limit_price": "180", "client_order_id": "EXJ1.1"}
        )
    ).json()
    before = {
        "orders": (await c.http.get("/v2/orders", params={"status": "all"})).json(),
        "fills": (await c.http.get("/v2/account/activities/FILL")).json(),
        "positions": (await c.http.get("/v2/positions")).json(),
    }
    await c.http.aclose()
    await server.stop()
    server = await _serve(venue())
    c = Client(server, checker)
    after = {
        "orders": (await c.http.get("/v2/orders", params={"status": "all"})).json(),
        "fills": (await c.http.get("/v2/account/activities/FILL")).json(),
        "positions": (await c.http.get("/v2/positions")).json(),
    }
    await c.http.aclose()
    await server.stop()
    assert before["orders"] == after["orders"] and before["fills"] == after["fills"]
    assert [p["qty"] for p in before["positions"]] == [p["qty"] for p in after["positions"]] == ["500"]
    legs = {o["client_order_id"]: o for o in after["orders"]}
    assert legs["EXJ1"]["status"] == "replaced" and legs["EXJ1"]["filled_qty"] == "500"
    assert legs["EXJ1.1"]["qty"] == "100" and legs["EXJ1.1"]["id"] == replaced["id"]
    assert not checker.problems, checker.problems
