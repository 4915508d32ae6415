"""The broker health page's "last successful call": Alpaca's REST client notes it, the session heartbeat writes it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from brokers.alpaca.client import AlpacaError, AlpacaRest
from brokers.sessions import SessionRecorder
from core.errors import BrokerUnavailable
from core.settings import AlpacaSettings
from store.sessions import sessions
from tests.harness import unique

pytestmark = pytest.mark.asyncio


async def test_only_a_2xx_answer_counts_as_a_successful_call() -> None:
    answers = iter([httpx.Response(500, text="down"), httpx.Response(422, json={"code": 1, "message": "no"})])
    answers_ok = httpx.Response(200, json={"id": "x"})

    def handle(request: httpx.Request) -> httpx.Response:
        return next(answers, answers_ok)

    rest = AlpacaRest("http://alpaca.test", AlpacaSettings(max_retries=0), transport=httpx.MockTransport(handle))
    try:
        with pytest.raises(BrokerUnavailable):
            await rest.request("POST", "/v2/orders", json_body={})
        with pytest.raises(AlpacaError):  # a refusal is an answer, not a successful call
            await rest.request("POST", "/v2/orders", json_body={})
        assert rest.last_ok_at is None
        before = datetime.now(UTC)
        assert await rest.request("POST", "/v2/orders", json_body={}) == {"id": "x"}
        assert rest.last_ok_at is not None and rest.last_ok_at >= before
    finally:
        await rest.aclose()


async def test_the_session_heartbeat_writes_the_last_successful_call(pool: AsyncConnectionPool) -> None:
    broker = unique("rest")
    called = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    recorder = SessionRecorder(pool, broker=broker, session="https://rest", heartbeat_seconds=0.05)  # type: ignore[arg-type]
    recorder.last_call = lambda: called
    await recorder.start()
    try:
        async with asyncio.timeout(10):
            while True:
                async with pool.connection() as conn:
                    row = next(s for s in await sessions(conn) if s["broker"] == broker)  # type: ignore[arg-type]
                if row["last_call_at"] is not None:
                    break
                await asyncio.sleep(0.02)
    finally:
        await recorder.stop()
    assert row["last_call_at"] == called


async def test_oanda_notes_its_last_2xx_answer_and_the_recorder_reads_it() -> None:
    from brokers.oanda.client import OandaError, OandaRest
    from core.settings import OandaSettings

    answers = iter(
        [httpx.Response(503, text="down"), httpx.Response(400, json={"errorCode": "X", "errorMessage": "no"})]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={"ok": True}))

    rest = OandaRest(OandaSettings(account_id="1", max_retries=0), transport=httpx.MockTransport(handle))
    try:
        with pytest.raises(BrokerUnavailable):
            await rest.request("POST", "/orders", json_body={})
        with pytest.raises(OandaError):  # a refusal is an answer, not a successful call
            await rest.request("POST", "/orders", json_body={})
        assert rest.last_ok_at is None
        before = datetime.now(UTC)
        assert await rest.request("GET", "/summary") == {"ok": True}
        assert rest.last_ok_at is not None and rest.last_ok_at >= before
    finally:
        await rest.aclose()


async def test_kraken_notes_its_last_answer_without_errors() -> None:
    from brokers.kraken.client import KrakenError, KrakenRest
    from core.settings import KrakenSettings

    answers = iter(
        [httpx.Response(502, text="bad gateway"), httpx.Response(200, json={"error": ["EOrder:Insufficient funds"]})]
    )

    def handle(request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={"error": [], "result": {"unixtime": 1}}))

    rest = KrakenRest(KrakenSettings(max_retries=0), transport=httpx.MockTransport(handle))
    try:
        with pytest.raises(BrokerUnavailable):
            await rest.public("Time")
        with pytest.raises(KrakenError):
            await rest.public("Time")
        assert rest.last_ok_at is None
        before = datetime.now(UTC)
        assert await rest.public("Time") == {"unixtime": 1}
        assert rest.last_ok_at is not None and rest.last_ok_at >= before
    finally:
        await rest.aclose()
