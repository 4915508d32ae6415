"""The EA's ticks: through the bridge endpoint into the quote store (source ``mt5``), mapped from XM names, and
into the risk decisions of MT5 orders end to end."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from core.instruments import InstrumentCatalog
from core.risk import ReasonCode
from store.quotes import fetch_quotes
from tests.brokers.mt5.conftest import MAGIC, Mt5Stack, Rig
from tests.brokers.mt5.fake_terminal import FakeTerminal, Sym, xm_symbols
from tests.brokers.mt5.peer import EaPeer
from tests.harness import make_order

pytestmark = pytest.mark.asyncio

D = Decimal


async def _mt5_quote(pool: AsyncConnectionPool, symbol: str) -> Any:
    async with pool.connection() as conn:
        [row] = await fetch_quotes(conn, symbol=symbol, source="mt5")
    return row


def _body(rig: Rig, *ticks: dict[str, Any]) -> dict[str, Any]:
    return rig.peer._ident() | {"sent_at_msc": int(time.time() * 1000), "ticks": list(ticks)}


def _tick(name: str, bid: str, ask: str, *, ago_ms: int = 0) -> dict[str, Any]:
    return {"broker_symbol": name, "bid": bid, "ask": ask, "last": "0", "time_msc": int(time.time() * 1000) - ago_ms}


async def test_ticks_become_mt5_quotes_of_the_exodus_symbols(rig: Rig, pool: AsyncConnectionPool) -> None:
    mid = D("1.2") + D(uuid.uuid4().int % 10_000) / 100_000  # a price no other test's terminal quotes
    await rig.terminal.set_mid("GBPUSD", mid)
    reply = await rig.peer.report_ticks()
    assert reply["accepted"] == 3 and reply["unknown"] == []  # EURUSD#, GBPUSD#, USDJPY#
    quote = await _mt5_quote(pool, "GBPUSD")
    assert (quote.quote.bid, quote.quote.ask, quote.quote.mid) == (mid - D("0.00001"), mid + D("0.00001"), mid)
    # The terminal's time is trade server time (UTC+2 here); the stored time is UTC, and not after receipt.
    assert abs((quote.received_at - quote.quote.at).total_seconds()) < 60  # (an offset mistake is hours)
    # Only what changed goes again: the tick times of the other symbols move too (a tick every moment here).
    assert [t["broker_symbol"] for t in rig.peer.sent["/ticks"][-1]["ticks"]] == ["EURUSD#", "GBPUSD#", "USDJPY#"]


async def test_names_map_through_the_heartbeat_else_by_the_eas_suffix_rule(rig: Rig) -> None:
    resp = await rig.http.post(
        rig.url("/ticks"),
        json=_body(
            rig,
            _tick("EURUSD#", "1.1", "1.2"),  # the heartbeat resolved it
            _tick("GBPUSDmicro", "1.251", "1.252"),  # not in the heartbeat: GBPUSD plus a suffix
            _tick("US500Cash", "5000", "5001"),  # nothing in the catalogue
            _tick("EURUSD#", "0", "0"),  # an empty tick (no prices) is not a quote
        ),
        headers=rig.auth(),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["accepted"] == 2 and resp.json()["unknown"] == ["US500Cash"]


async def test_an_older_tick_never_replaces_a_newer_quote(rig: Rig, pool: AsyncConnectionPool) -> None:
    new = await rig.http.post(
        rig.url("/ticks"), json=_body(rig, _tick("USDJPY#", "151.1", "151.3")), headers=rig.auth()
    )
    assert new.status_code == 200
    old = _tick("USDJPY#", "140.0", "140.2", ago_ms=60_000)
    assert (await rig.http.post(rig.url("/ticks"), json=_body(rig, old), headers=rig.auth())).status_code == 200
    assert (await _mt5_quote(pool, "USDJPY")).quote.mid == D("151.2")


async def test_ticks_need_the_heartbeating_session_and_a_well_formed_body(rig: Rig) -> None:
    stranger = _body(rig, _tick("EURUSD#", "1.1", "1.2")) | {"session_id": "not-the-one"}
    resp = await rig.http.post(rig.url("/ticks"), json=stranger, headers=rig.auth())
    assert resp.status_code == 409 and resp.json()["reasons"][0] == {
        "code": "HEARTBEAT_FIRST",
        "field": "session_id",
        "message": resp.json()["message"],
    }
    negative = await rig.http.post(
        rig.url("/ticks"), json=_body(rig, _tick("EURUSD#", "-1", "1.2")), headers=rig.auth()
    )
    assert negative.status_code == 422 and negative.json()["reasons"][0]["field"] == "ticks.0.bid"
    unauthenticated = await rig.http.post(rig.url("/ticks"), json=_body(rig))
    assert unauthenticated.status_code == 401
    assert (
        await rig.http.post(rig.url("/ticks"), json=_body(rig) | {"protocol": 2}, headers=rig.auth())
    ).status_code == 400


async def test_mt5_orders_are_priced_by_the_eas_ticks_and_refused_once_they_are_too_old(
    mt5_stack: Mt5Stack, pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> None:
    stack = mt5_stack.stack
    account = mt5_stack.accounts.pop()
    terminal = FakeTerminal(symbols=[*xm_symbols(), Sym("AUDUSD#", "AUDUSD", D(100000), D("0.65499"), D("0.65501"))])
    terminal.quiet("AUDUSD", for_seconds=25 * 3600)  # no AUDUSD tick since yesterday (the session allows 24 h)
    async with stack.api() as http:
        peer = EaPeer(
            http, terminal, account=account, token=f"tok-{account}", magic=MAGIC, symbols=("EURUSD", "AUDUSD")
        )
        await peer.on_init()
        await peer.report_ticks()
        seen = (await http.get("/api/v1/quotes/AUDUSD", params={"broker": "mt5"})).json()
        [mt5] = seen["brokers"]
        assert (mt5["source"], mt5["status"]) == ("mt5", "STALE_REFERENCE_PRICE")
        stale, _ = await stack.submit(make_order(symbol="AUDUSD", qty="10000", account=account, broker="mt5"))
        assert [r.code for r in stale.reasons] == [ReasonCode.STALE_REFERENCE_PRICE]
        assert "the mt5 quote for AUDUSD is 900" in stale.reasons[0].message

        await terminal.set_mid("AUDUSD", D("0.66000"))  # the market opens: ticks again
        await peer.report_ticks()
        async with peer.running():
            decision, handle = await stack.submit(
                make_order(symbol="AUDUSD", qty="10000", account=account, broker="mt5")
            )
            assert decision.approved, decision.reasons
            assert decision.reference_price == D("0.66000") and decision.notional == D("6600.00000")
            result = await stack.result(handle)
        assert result.status.value == "FILLED" and D(result.avg_price) == D("0.66001")
        assert terminal.sent[0]["symbol"] == "AUDUSD#"
