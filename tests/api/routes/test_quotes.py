"""GET /api/v1/quotes and /quotes/{symbol}: what risk sees; the quote-age metric; the readiness note."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from brokers import BROKERS
from core.marketdata import Quote, StoredQuote
from core.settings import MarketDataSettings
from store.quotes import upsert_quotes
from tests.harness import Stack

D = Decimal


async def _stale_mt5_spy(stack: Stack) -> None:
    # Nobody else quotes SPY over mt5 in the session: two days old is stale under any test setting.
    at = datetime.now(UTC) - timedelta(days=2)
    async with stack.pool.connection() as conn:
        await upsert_quotes(conn, [StoredQuote(Quote(symbol="SPY", source="mt5", bid=D(500), ask=D(501), at=at), at)])


async def test_quotes_list_every_source_with_age_and_staleness(stack: Stack) -> None:
    await stack.venue.set_mid("MSFT", D("421.00"))
    await _stale_mt5_spy(stack)
    async with stack.api() as http:
        r = await http.get("/api/v1/quotes", params={"symbol": "msft", "source": "paper"})
        assert r.status_code == 200, r.text
        [msft] = r.json()["data"]
        assert (msft["symbol"], msft["source"]) == ("MSFT", "paper")
        assert (D(msft["bid"]), D(msft["ask"]), D(msft["mid"])) == (D("420.99"), D("421.01"), D("421.00"))
        assert msft["stale"] is False and 0 <= msft["ageSeconds"] < 60 and msft["maxAgeSeconds"] == 86400
        assert msft["at"] and msft["receivedAt"] and msft["last"] is None
        stale = (await http.get("/api/v1/quotes", params={"stale": "true"})).json()["data"]
        assert ("SPY", "mt5") in {(q["symbol"], q["source"]) for q in stale} and all(q["stale"] for q in stale)
        bad = await http.get("/api/v1/quotes", params={"symbol": "AAPL; drop"})
        assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "symbol"


async def test_quotes_of_a_symbol_show_what_risk_would_use_at_each_broker(stack: Stack) -> None:
    await stack.venue.set_mid("SPY", D("560.00"))
    await _stale_mt5_spy(stack)
    async with stack.api() as http:
        r = await http.get("/api/v1/quotes/spy")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["symbol"] == "SPY" and {"paper", "mt5"} <= {q["source"] for q in body["quotes"]}
        brokers = {b["broker"]: b for b in body["brokers"]}
        assert set(brokers) == set(BROKERS)  # every registered broker
        assert (brokers["paper"]["status"], D(brokers["paper"]["price"])) == ("OK", D("560.00"))
        assert brokers["mt5"]["status"] == "STALE_REFERENCE_PRICE" and brokers["mt5"]["price"] is None
        assert "the mt5 quote for SPY is 1728" in brokers["mt5"]["message"]
        one = (await http.get("/api/v1/quotes/SPY", params={"broker": "mt5"})).json()["brokers"]
        assert [b["broker"] for b in one] == ["mt5"]
        unknown = await http.get("/api/v1/quotes/NOPE")
        assert unknown.status_code == 404 and unknown.json()["reasons"][0]["field"] == "symbol"
        bad = await http.get("/api/v1/quotes/SPY", params={"broker": "nyse"})
        assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "broker"


async def test_metrics_show_quote_age_per_source_computed_when_scraped(stack: Stack) -> None:
    await stack.venue.set_mid("AAPL", D("190.00"))
    await _stale_mt5_spy(stack)
    async with stack.api() as http:
        text = (await http.get("/metrics")).text
    ages = {
        line.split('source="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("exodus_quote_age_seconds{")
    }
    assert ages["paper"] < 60  # paper's newest quote: AAPL, just moved
    assert "exodus_quotes_stale{" in text
    stale = {
        line.split('source="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("exodus_quotes_stale{")
    }
    assert stale["mt5"] >= 1


async def test_ready_notes_a_silent_source_without_failing(stack: Stack) -> None:
    settings = stack.settings.model_copy(
        update={"market_data": MarketDataSettings(max_age_seconds=30, expected_sources=["paper", "fix-backup"])}
    )
    await stack.venue.set_mid("AAPL", D("190.00"))
    async with stack.api(settings) as http:
        r = await http.get("/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    [note] = r.json()["notes"]
    assert "'fix-backup' has never published a quote" in note
