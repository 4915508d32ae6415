"""GET /api/v1/stream: live, resumable across API processes, scoped, filtered, and a slow client cut off alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import websockets

from api.streaming import StreamHub, StreamRequest, StreamSession, parse_request, pump
from core.auth import Scope
from core.domain import OrderEvent, OrderEventKind, OrderStatus, TimelineKind, utcnow
from core.settings import ApiSettings, Settings, StreamSettings, TokenSettings
from store import Pool
from store.stream import floor, last_seq, prune
from store.timeline import write_events
from tests.api.streamkit import book_states, connect, events, next_message, open_pool, serve, sse_messages
from tests.conftest import create_database, make_settings
from tests.store.kit import decided

pytestmark = pytest.mark.asyncio

FAST = StreamSettings(heartbeat_seconds=0.3, poll_seconds=0.5, client_buffer=50, page_size=20)


@pytest.fixture(scope="module")
async def stream_db(postgres_admin_url: str) -> str:
    return await create_database(postgres_admin_url, "exodus_stream")


@pytest.fixture(scope="module")
async def db(stream_db: str) -> AsyncIterator[Pool]:
    async with open_pool(stream_db) as pool:
        yield pool


def _settings(url: str, stream: StreamSettings = FAST, **api: Any) -> Settings:
    return make_settings(url, "127.0.0.1:1", stream=stream, **({"api": ApiSettings(**api)} if api else {}))


async def _position(db: Pool) -> int:
    async with db.connection() as conn:
        return await last_seq(conn)


async def test_a_client_resumes_on_another_api_process_without_gaps_or_duplicates(stream_db: str, db: Pool) -> None:
    settings = _settings(stream_db)
    start = await _position(db)
    names = [f"RESUME{i}" for i in range(80)]
    async with serve(settings) as a, serve(settings) as b:
        async with connect(a, f"since={start}") as ws:
            hello = await next_message(ws)
            assert hello == {"type": "hello", "seq": start, "heartbeatSeconds": 0.3}
            writer = asyncio.create_task(book_states(db, names))
            first = await events(ws, 30)
        # Disconnected while the writer goes on; resume on the other process from the last number received.
        async with connect(b, f"since={first[-1]['seq']}") as ws:
            rest = await events(ws, len(names) - 30)
            await writer
    got = first + rest
    assert [m["seq"] for m in got] == list(range(start + 1, start + 1 + len(names)))
    assert [m["data"]["key"] for m in got] == names
    assert all(m["kind"] == "TRADING_STATE" and m["topic"] == "trading_state" for m in got)


async def test_a_process_serves_what_another_booked_live_and_a_resume_ahead_of_it_repeats_nothing(
    stream_db: str, db: Pool
) -> None:
    settings = _settings(stream_db, StreamSettings(heartbeat_seconds=5, poll_seconds=60))
    async with serve(settings) as a, serve(settings) as b:
        async with connect(a) as wa, connect(b) as wb:
            await next_message(wa), await next_message(wb)
            await book_states(a.pool, ["LIVE1", "LIVE2"])
            # poll_seconds is a minute: only the notification can have woken b's hub in time.
            got_a, got_b = await events(wa, 2, timeout=20), await events(wb, 2, timeout=20)
        assert got_a == got_b
        # A client resuming on b with a number b's hub has not read yet (b heard nothing: its listener is
        # stopped) gets only what comes after it, once b reads.
        hub = b.app.state.stream_hub
        for task in hub._tasks[:1]:
            task.cancel()
        await book_states(db, ["AHEAD1", "AHEAD2", "AHEAD3"])
        after = (await _position(db)) - 1
        async with connect(b, f"since={after}") as ws:
            await next_message(ws)
            hub.wake()
            (only,) = await events(ws, 1)
            assert only["data"]["key"] == "AHEAD3"
            await book_states(db, ["AHEAD4"])
            hub.wake()
            (nxt,) = await events(ws, 1)
            assert nxt["data"]["key"] == "AHEAD4" and nxt["seq"] == only["seq"] + 1


async def test_sse_resumes_with_last_event_id_and_heartbeats_carry_the_position(stream_db: str, db: Pool) -> None:
    settings = _settings(stream_db)
    start = await _position(db)
    await book_states(db, ["SSE1", "SSE2", "SSE3"])
    async with serve(settings) as a, httpx.AsyncClient(base_url=a.url, timeout=20) as http:
        got = await sse_messages(http, f"/api/v1/stream?since={start}", 2)
        assert [(i, m["data"]["key"]) for i, m in got] == [(str(start + 1), "SSE1"), (str(start + 2), "SSE2")]
        resumed = await sse_messages(http, "/api/v1/stream", 1, headers={"Last-Event-ID": got[-1][0] or ""})
        assert resumed[0][1]["data"]["key"] == "SSE3"
        # Filtered to fills, a client sees none of these, but its heartbeats move past them.
        beat = await sse_messages(http, f"/api/v1/stream?since={start}&kinds=FILL", 1, want="heartbeat")
        assert beat[0][0] == str(start + 3) and beat[0][1]["seq"] == start + 3


async def test_every_kind_of_an_order_timeline_can_be_filtered_on() -> None:
    # The filter's kinds are the domain's (OrderEventKind and TimelineKind), not a list kept beside them: a kind the
    # workflow records is one a client may ask for.
    for kind in (*OrderEventKind, *TimelineKind):
        request = parse_request({"kinds": kind.value})
        assert isinstance(request, StreamRequest), (kind, request)
        assert request.kinds == frozenset({kind.value})
    refused = parse_request({"kinds": "RECEIVED,NOT_A_KIND"})
    assert isinstance(refused, list) and [r.field for r in refused] == ["kinds"]


async def test_bad_parameters_are_refused_naming_the_field(stream_db: str, db: Pool) -> None:
    settings = _settings(stream_db)
    head = await _position(db)
    cases = {
        "since=-1": "since",
        f"since={10**40}": "since",
        "since=abc": "since",
        f"since={head + 1000}": "since",
        "kinds=FILL,NOPE": "kinds",
        "account=a%01b": "account",
        "symbol=": "symbol",
        "client=" + "x" * 65: "client",
        "colour=red": "colour",
    }
    async with serve(settings) as a, httpx.AsyncClient(base_url=a.url, timeout=20) as http:
        for query, field in cases.items():
            r = await http.get(f"/api/v1/stream?{query}")
            assert r.status_code == 422, (query, r.status_code, r.text)
            assert field in [x["field"] for x in r.json()["reasons"]], (query, r.text)
            # The WebSocket is refused before its handshake with the same answer.
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with connect(a, query):
                    pass
            response = refused.value.response
            assert response.status_code == 422, query
            assert field in [x["field"] for x in json.loads(response.body)["reasons"]], query
        r = await http.get("/api/v1/stream", headers={"Last-Event-ID": "-5"})
        assert r.status_code == 422 and r.json()["reasons"][0]["field"] == "Last-Event-ID"


async def test_a_trader_sees_only_its_scope_and_needs_credentials(stream_db: str, db: Pool) -> None:
    tokens = {
        "desk": TokenSettings(token="t-desk", scope=Scope(clients=["c-in"], accounts=["a-in"], brokers="*")),
        "mt5": TokenSettings(token="t-bridge", roles=["bridge"]),
        "ops": TokenSettings(token="t-ops", roles=["operator"], scope=Scope.everything()),
    }
    settings = _settings(stream_db, tokens=tokens)
    start = await _position(db)
    async with db.connection() as conn:
        mine = await decided(conn, client_id="c-in", account="a-in")
        theirs = await decided(conn, client_id="c-out", account="a-out")
        for order in (theirs, mine):
            event = OrderEvent(seq=1, at=utcnow(), kind=TimelineKind.RECEIVED, status=OrderStatus.RECEIVED, detail="")
            await write_events(conn, order_id=order.order_id, version=1, events=[event])
    await book_states(db, ["SCOPED"])
    async with serve(settings) as a:
        async with connect(a, f"since={start}", {"Authorization": "Bearer t-desk"}) as ws:
            await next_message(ws)
            got = await events(ws, 2)
        assert [(m["orderId"], m["kind"]) for m in got] == [(mine.order_id, "RECEIVED"), (None, "TRADING_STATE")]
        async with connect(a, f"since={start}", {"Authorization": "Bearer t-ops"}) as ws:
            await next_message(ws)
            assert len(await events(ws, 3)) == 3
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer nope"}, 401),
            ({"Authorization": "Bearer t-bridge"}, 403),
        ):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with connect(a, "", headers):
                    pass
            assert refused.value.response.status_code == status
        async with httpx.AsyncClient(base_url=a.url, timeout=20) as http:
            assert (await http.get("/api/v1/stream")).status_code == 401
            assert (await http.get("/api/v1/stream", headers={"Authorization": "Bearer t-bridge"})).status_code == 403
            got_sse = await sse_messages(
                http, f"/api/v1/stream?since={start}", 2, headers={"Authorization": "Bearer t-desk"}
            )
            assert [m["orderId"] for _, m in got_sse] == [mine.order_id, None]


async def test_a_slow_client_is_cut_off_without_delaying_the_others(stream_db: str, db: Pool) -> None:
    settings = StreamSettings(heartbeat_seconds=30, poll_seconds=0.2, client_buffer=10, page_size=50)
    hub = StreamHub(db, stream_db, settings)
    await hub.start()
    try:
        fast: list[dict[str, Any]] = []
        slow_attempts: list[dict[str, Any]] = []
        blocked = asyncio.Event()
        never = asyncio.Event()

        async def fast_send(message: dict[str, Any]) -> None:
            fast.append(message)

        async def slow_send(message: dict[str, Any]) -> None:
            slow_attempts.append(message)
            if message["type"] == "event":
                blocked.set()
                await never.wait()  # a socket whose reader stopped reading

        live = StreamRequest(since=None, accounts=None, symbols=None, clients=None, kinds=None)
        slow = asyncio.create_task(
            pump(StreamSession(hub, live, Scope.everything()), slow_send, lagging_send_timeout=0.2)
        )
        quick = asyncio.create_task(pump(StreamSession(hub, live, Scope.everything()), fast_send))
        while hub.clients < 2:
            await asyncio.sleep(0.01)
        names = [f"SLOW{i}" for i in range(40)]
        # In batches smaller than a client's buffer, each one booked once the fast client has the last: the fast
        # client is fed while the slow one's send stays blocked. Booked at once, the hub of a loaded machine may
        # read all 40 rows in one go and overflow the fast client's buffer of 10 too, before it could take any.
        async with asyncio.timeout(60):
            for i in range(0, len(names), 5):
                await book_states(db, names[i : i + 5])
                while len([m for m in fast if m["type"] == "event"]) < i + 5:
                    assert not quick.done(), fast[-1:]
                    await asyncio.sleep(0.01)
            await slow  # cut off: it ends although its send never returned
        assert blocked.is_set()
        assert slow_attempts[-1]["type"] == "lagging" and "since=" in slow_attempts[-1]["message"]
        assert [m["data"]["key"] for m in fast if m["type"] == "event"] == names
        assert not quick.done() and hub.clients == 1  # the slow one is unsubscribed, the fast one goes on
        quick.cancel()
    finally:
        await hub.stop()


async def test_a_client_that_stops_reading_while_catching_up_is_cut_off_alone(stream_db: str, db: Pool) -> None:
    settings = StreamSettings(heartbeat_seconds=30, poll_seconds=0.2, page_size=5, send_timeout_seconds=0.5)
    start = await _position(db)
    names = [f"CATCH{i}" for i in range(20)]
    await book_states(db, names)
    hub = StreamHub(db, stream_db, settings)
    await hub.start()
    try:
        attempts: list[dict[str, Any]] = []
        fast: list[dict[str, Any]] = []
        never = asyncio.Event()

        async def stuck_send(message: dict[str, Any]) -> None:
            attempts.append(message)
            if message["type"] == "event" and len(attempts) == 4:
                await never.wait()  # the client stopped reading on its third event, still catching up

        async def fast_send(message: dict[str, Any]) -> None:
            fast.append(message)

        resume = StreamRequest(since=start, accounts=None, symbols=None, clients=None, kinds=None)
        stuck_session = StreamSession(hub, resume, Scope.everything())
        stuck = asyncio.create_task(pump(stuck_session, stuck_send, lagging_send_timeout=0.2))
        quick = asyncio.create_task(pump(StreamSession(hub, resume, Scope.everything()), fast_send))
        async with asyncio.timeout(30):
            await stuck  # cut off although its send never returned, and before it joined the live feed
            while len([m for m in fast if m["type"] == "event"]) < len(names):
                await asyncio.sleep(0.01)
        assert stuck_session.sub is None and stuck_session.lagging
        last = attempts[-1]
        assert last["type"] == "lagging" and last["seq"] == start + 2, last
        assert "took no message for 0.5 s" in last["message"] and f"since={start + 2}" in last["message"]
        assert [m["data"]["key"] for m in fast if m["type"] == "event"] == names
        assert not quick.done()
        quick.cancel()
    finally:
        await hub.stop()


@pytest.fixture(scope="module")
async def pruned_db(postgres_admin_url: str) -> str:
    # Pruning deletes from the start of the stream: a database of its own.
    return await create_database(postgres_admin_url, "exodus_stream_pruned")


async def _prune_all_but_last(pool: Pool, keep: int) -> int:
    async with pool.connection() as conn:
        head = await last_seq(conn)
        await conn.execute(
            "UPDATE stream_events SET booked_at = booked_at - interval '30 days' WHERE seq <= %s", (head - keep,)
        )
        async with conn.transaction():
            await prune(conn, older_than=timedelta(days=1))
        return await floor(conn)


async def test_a_pruned_position_is_refused_410_naming_since(pruned_db: str) -> None:
    async with open_pool(pruned_db) as pool:
        await book_states(pool, [f"OLD{i}" for i in range(6)])
        pruned = await _prune_all_but_last(pool, 2)
        assert pruned > 0
        async with serve(_settings(pruned_db)) as a, httpx.AsyncClient(base_url=a.url, timeout=20) as http:
            r = await http.get(f"/api/v1/stream?since={pruned - 1}")
            assert r.status_code == 410, r.text
            [reason] = r.json()["reasons"]
            assert (reason["code"], reason["field"]) == ("SINCE_PRUNED", "since")
            assert f"since={pruned}" in reason["message"] and f"after {pruned - 1}" in reason["message"]
            r = await http.get("/api/v1/stream", headers={"Last-Event-ID": "0"})
            assert r.status_code == 410 and r.json()["reasons"][0]["field"] == "Last-Event-ID"
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with connect(a, f"since={pruned - 1}"):
                    pass
            assert refused.value.response.status_code == 410
            # From the floor on, nothing is missing.
            got = await sse_messages(http, f"/api/v1/stream?since={pruned}", 2)
            assert [m["data"]["key"] for _, m in got] == ["OLD4", "OLD5"]


async def test_a_client_the_pruning_overtakes_while_catching_up_is_told_reset(pruned_db: str) -> None:
    settings = StreamSettings(heartbeat_seconds=30, poll_seconds=0.2, page_size=2, send_timeout_seconds=30)
    async with open_pool(pruned_db) as pool:
        start = await _position(pool)
        await book_states(pool, [f"RACE{i}" for i in range(8)])
        hub = StreamHub(pool, pruned_db, settings)
        await hub.start()
        try:
            sent: list[dict[str, Any]] = []
            first_taken, go_on = asyncio.Event(), asyncio.Event()

            async def send(message: dict[str, Any]) -> None:
                sent.append(message)
                if message["type"] == "event" and not first_taken.is_set():
                    first_taken.set()
                    await go_on.wait()

            request = StreamRequest(since=start, accounts=None, symbols=None, clients=None, kinds=None)
            session = StreamSession(hub, request, Scope.everything())
            task = asyncio.create_task(pump(session, send))
            await asyncio.wait_for(first_taken.wait(), 10)
            pruned = await _prune_all_but_last(pool, 1)  # the rest of its page and more are gone meanwhile
            go_on.set()
            await asyncio.wait_for(task, 10)
        finally:
            await hub.stop()
    kinds = [m["type"] for m in sent]
    assert kinds == ["hello", "event", "event", "reset"], sent
    reset = sent[-1]
    assert reset["since"] == start + 2 and reset["seq"] == pruned and f"since={pruned}" in reset["message"]
    assert session.reset and not session.lagging
