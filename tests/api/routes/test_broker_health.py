"""GET /api/v1/brokers/health: sessions (logon, owner, last REST call), MT5 terminals, quote age per source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokers.mt5.tables import register_account
from core.marketdata import Quote, StoredQuote
from core.settings import MarketDataSettings
from store.quotes import upsert_quotes
from store.sessions import heartbeat, record_session
from tests.harness import Stack, unique

D = Decimal


async def test_broker_health_shows_sessions_terminals_and_quote_age(stack: Stack) -> None:
    fix, alpaca, dead = unique("fix"), unique("alpaca"), unique("fix")
    account, silent_account = unique("xm"), unique("xm")
    fresh_src, mixed_src, never = unique("src"), unique("src"), unique("src")
    now = datetime.now(UTC)
    called = now - timedelta(seconds=3)
    async with stack.pool.connection() as conn:
        await record_session(conn, broker=fix, session="FIX.4.4:EXODUS->VENUE", logged_on=True, detail="logged on")
        await record_session(conn, broker=alpaca, session="https://paper", logged_on=False, detail="stream dropped")
        await heartbeat(conn, alpaca, last_call_at=called)
        await record_session(conn, broker=dead, session="S", logged_on=True, detail="logged on")
        await conn.execute(
            "UPDATE broker_sessions SET heartbeat_at = now() - interval '5 minutes' WHERE broker = %s", (dead,)
        )
        for acct in (account, silent_account):
            await register_account(conn, acct, 30.0)
        await conn.execute(
            "UPDATE mt5_accounts SET connected = true, last_heartbeat_at = now() - %s, login = 7, server = 'XM-Demo'"
            " WHERE account = %s",
            (timedelta(seconds=2), account),
        )
        await conn.execute(
            "UPDATE mt5_accounts SET connected = true, last_heartbeat_at = now() - interval '2 minutes'"
            " WHERE account = %s",
            (silent_account,),
        )
        old = now - timedelta(days=2)
        await upsert_quotes(
            conn,
            [
                StoredQuote(Quote(symbol="AAPL", source=fresh_src, bid=D(1), ask=D(2), at=now), now),
                StoredQuote(Quote(symbol="AAPL", source=mixed_src, bid=D(1), ask=D(2), at=now), now),
                StoredQuote(Quote(symbol="SPY", source=mixed_src, bid=D(1), ask=D(2), at=old), old),
            ],
        )
    settings = stack.settings.model_copy(
        update={"market_data": MarketDataSettings(expected_sources=[fresh_src, mixed_src, never])}
    )
    async with stack.api(settings) as http:
        r = await http.get("/api/v1/brokers/health")
    assert r.status_code == 200, r.text
    body = r.json()
    sessions = {s["broker"]: s for s in body["sessions"]}
    assert (sessions[fix]["state"], sessions[fix]["loggedOn"], sessions[fix]["session"]) == (
        "UP",
        True,
        "FIX.4.4:EXODUS->VENUE",
    )
    assert sessions[fix]["lastCallAt"] is None and sessions[fix]["heartbeatAgeSeconds"] < 60
    assert (sessions[alpaca]["state"], sessions[alpaca]["detail"]) == ("DOWN", "stream dropped")
    assert datetime.fromisoformat(sessions[alpaca]["lastCallAt"]) == called
    assert 0 <= sessions[alpaca]["lastCallAgeSeconds"] < 60
    assert sessions[dead]["state"] == "NO_OWNER" and sessions[dead]["heartbeatAgeSeconds"] >= 290
    terminals = {t["account"]: t for t in body["terminals"]}
    assert (terminals[account]["state"], terminals[account]["login"], terminals[account]["server"]) == (
        "UP",
        7,
        "XM-Demo",
    )
    assert terminals[silent_account]["state"] == "SILENT" and terminals[silent_account]["heartbeatAgeSeconds"] > 100
    quotes = {q["source"]: q for q in body["quotes"]}
    assert (quotes[fresh_src]["state"], quotes[fresh_src]["symbols"], quotes[fresh_src]["staleSymbols"]) == ("OK", 1, 0)
    assert (quotes[mixed_src]["state"], quotes[mixed_src]["symbols"], quotes[mixed_src]["staleSymbols"]) == (
        "STALE",
        2,
        1,
    )
    assert quotes[mixed_src]["newestAgeSeconds"] < 60
    assert quotes[never] == {
        "source": never,
        "state": "SILENT",
        "symbols": 0,
        "staleSymbols": 0,
        "newestAgeSeconds": None,
    }


def _gauge(text: str, name: str, label: str, value: str) -> float | None:
    """The value of ``name{label="value"}`` in a Prometheus exposition, else None."""
    prefix = f'{name}{{{label}="{value}"}} '
    found = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(found[0].rsplit(" ", 1)[1]) if found else None


async def test_metrics_show_rest_last_call_age_and_mt5_terminal_heartbeat_age(stack: Stack) -> None:
    alpaca, fix, account, never = unique("alpaca"), unique("fix"), unique("xm"), unique("xm")
    async with stack.pool.connection() as conn:
        await record_session(conn, broker=alpaca, session="https://paper", logged_on=True, detail="logged on")
        await heartbeat(conn, alpaca, last_call_at=datetime.now(UTC) - timedelta(seconds=400))
        await record_session(conn, broker=fix, session="S", logged_on=True, detail="logged on")
        await register_account(conn, account, 30.0)
        await register_account(conn, never, 30.0)
        await conn.execute(
            "UPDATE mt5_accounts SET connected = true, last_heartbeat_at = now() - interval '90 seconds'"
            " WHERE account = %s",
            (account,),
        )
    async with stack.api() as http:
        text = (await http.get("/metrics")).text
    last_call = _gauge(text, "exodus_broker_last_call_age_seconds", "broker", alpaca)
    assert last_call is not None and 399 <= last_call < 460
    assert _gauge(text, "exodus_broker_last_call_age_seconds", "broker", fix) is None  # no REST call: no sample
    age = _gauge(text, "exodus_mt5_terminal_heartbeat_age_seconds", "account", account)
    assert age is not None and 89 <= age < 150
    assert _gauge(text, "exodus_mt5_terminal_connected", "account", account) == 1
    assert _gauge(text, "exodus_mt5_terminal_connected", "account", never) == 0
    assert _gauge(text, "exodus_mt5_terminal_heartbeat_age_seconds", "account", never) is None
