"""What the Alpaca adapter does beyond the shared contracts: the stream dropped while orders fill and caught up
over REST exactly once, fills deduplicated across the stream, the activities and status lookups, replaces of
partly filled orders, quotes published as source "alpaca", positions and account, keys and storage failures."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from brokers.alpaca.execution import AlpacaBroker
from brokers.alpaca.store import AlpacaStore
from core.domain import (
    CancelOrder,
    OrderSide,
    OrderStatus,
    OrderType,
    PegType,
    ReplaceOrder,
    ReportKind,
    SubmitOrder,
    TimeInForce,
    utcnow,
)
from core.errors import BrokerUnavailable
from core.instruments import InstrumentCatalog
from core.marketdata import Quote
from tests.brokers.alpaca.kit import AlpacaPair, Forwarder, eventually, running_pair
from tests.brokers.contract import ReportCollector

D = Decimal


def _cid() -> str:
    return "EX" + uuid.uuid4().hex[:16].upper()


def _limit(qty: str, price: str, *, side: OrderSide = OrderSide.BUY, tif: TimeInForce = TimeInForce.GTC) -> SubmitOrder:
    return SubmitOrder(
        cl_ord_id=_cid(),
        account="desk",
        symbol="AAPL",
        side=side,
        type=OrderType.LIMIT,
        time_in_force=tif,
        qty=D(qty),
        price=D(price),
    )


@pytest.fixture
async def pair(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog, database_url: str
) -> AsyncIterator[AlpacaPair]:
    quotes: list[Quote] = []

    async def sink(quote: Quote) -> None:
        quotes.append(quote)

    async with running_pair(
        pool, instruments, sink=Forwarder(), journal_url=database_url, quotes=sink, quote_interval_ms=60_000
    ) as p:
        p.published = quotes  # type: ignore[attr-defined]
        yield p


@pytest.fixture
def reports(pair: AlpacaPair) -> ReportCollector:
    collector = ReportCollector()
    assert isinstance(pair.sink, Forwarder)
    pair.sink.target = collector
    return collector


def _fills(reports: ReportCollector, cid: str) -> list:  # type: ignore[type-arg]
    return [r for r in reports.of(cid) if r.kind is ReportKind.FILL]


async def test_stream_dropped_while_orders_fill_is_caught_up_exactly_once(
    pair: AlpacaPair, reports: ReportCollector
) -> None:
    venue, broker = pair.venue, pair.broker
    await venue.set_mid("AAPL", D("190.00"))
    big = _limit("1200", "185.00")  # fills 500, 500, 200 once the market comes down
    small = _limit("10", "185.00")
    resting = _limit("5", "150.00")
    for order in (big, small, resting):
        assert (await broker.submit_order(order)).accepted
    catch_ups = broker.catch_ups
    venue.faults.refuse_streams = True
    await venue.drop_streams()
    await eventually(lambda: not broker.stream.listening.is_set())
    await venue.set_mid("AAPL", D("184.00"))  # big fills 500, small fills 10
    await venue.step()  # big fills 500 more
    cancel = CancelOrder(cl_ord_id=resting.cl_ord_id, symbol="AAPL", side=OrderSide.BUY, qty=D(5))
    assert (await broker.cancel_order(cancel)).accepted  # REST works; the canceled event is lost with the stream
    assert not _fills(reports, big.cl_ord_id) and not _fills(reports, small.cl_ord_id)
    venue.faults.refuse_streams = False
    await eventually(lambda: broker.catch_ups > catch_ups, timeout=20)
    await reports.wait_for(lambda _: sum(f.last_qty for f in _fills(reports, big.cl_ord_id)) == D(1000))
    await reports.wait_for(lambda _: sum(f.last_qty for f in _fills(reports, small.cl_ord_id)) == D(10))
    await reports.wait_for(lambda _: any(r.kind is ReportKind.CANCELED for r in reports.of(resting.cl_ord_id)))
    await venue.step()  # the last 200 arrive over the stream again
    await reports.wait_for(lambda _: sum(f.last_qty for f in _fills(reports, big.cl_ord_id)) == D(1200))
    fills = _fills(reports, big.cl_ord_id)
    assert [f.last_qty for f in fills] == [D(500), D(500), D(200)]
    assert len({f.exec_id for f in fills}) == 3 and all(f.last_price == D("184.01") for f in fills)
    # Asking again (another catch-up, a status lookup) finds nothing new.
    before = len(reports.reports)
    await broker._catch_up_once()
    status = await broker.get_order_status(big.cl_ord_id)
    assert status is not None and status.status is OrderStatus.FILLED and status.cum_qty == D(1200)
    assert len(reports.reports) == before
    recorded = await pair.store.journal.reports(big.cl_ord_id)
    assert [r.last_qty for r in recorded if r.kind is ReportKind.FILL] == [D(500), D(500), D(200)]


async def test_fills_are_the_same_whichever_way_they_are_learnt(pair: AlpacaPair, reports: ReportCollector) -> None:
    broker = pair.broker
    await pair.venue.set_mid("AAPL", D("190.00"))
    order = _limit("700", "191.00")
    assert (await broker.submit_order(order)).accepted
    await pair.venue.step()
    await reports.wait_for(lambda _: sum(f.last_qty for f in _fills(reports, order.cl_ord_id)) == D(700))
    streamed = {f.exec_id: (f.last_qty, f.last_price) for f in _fills(reports, order.cl_ord_id)}
    from_rest = {
        f.exec_id: (f.last_qty, f.last_price)
        for f in await broker.fills_since(utcnow().replace(year=2000))
        if f.cl_ord_id == order.cl_ord_id
    }
    assert streamed == from_rest and len(streamed) == 2


async def test_replacing_a_partly_filled_order_keeps_totals(pair: AlpacaPair, reports: ReportCollector) -> None:
    broker, venue = pair.broker, pair.venue
    await venue.set_mid("AAPL", D("190.00"))
    order = _limit("800", "191.00")  # 500 fill at once, 300 left
    assert (await broker.submit_order(order)).accepted
    await reports.wait_for(lambda _: bool(_fills(reports, order.cl_ord_id)))
    new_cid = f"{order.cl_ord_id}.1"
    ack = await broker.replace_order(
        ReplaceOrder(
            orig_cl_ord_id=order.cl_ord_id,
            cl_ord_id=new_cid,
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(600),
            price=D("180.00"),
        )
    )
    assert ack.accepted, ack.reason
    [replaced] = [r for r in ack.reports if r.kind is ReportKind.REPLACED]
    assert replaced.cl_ord_id == new_cid and replaced.new_qty == D(600) and replaced.new_price == D("180.00")
    alpaca_new = await broker._current(new_cid)
    assert alpaca_new is not None and alpaca_new.qty == D(100)  # Alpaca's replacement works what is left
    status = await broker.get_order_status(new_cid)
    assert status is not None and (status.qty, status.cum_qty, status.status) == (
        D(600),
        D(500),
        OrderStatus.PARTIALLY_FILLED,
    )
    await venue.set_mid("AAPL", D("179.00"))
    await reports.wait_for(lambda _: sum(f.last_qty for f in _fills(reports, order.cl_ord_id)) == D(600))
    status = await broker.get_order_status(order.cl_ord_id)  # the original id follows the chain
    assert status is not None and status.status is OrderStatus.FILLED and status.cl_ord_id == new_cid
    too_much = await broker.replace_order(
        ReplaceOrder(
            orig_cl_ord_id=new_cid,
            cl_ord_id=f"{order.cl_ord_id}.2",
            symbol="AAPL",
            side=OrderSide.BUY,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=D(700),
            price=D("170.00"),
        )
    )
    assert not too_much.accepted and "TOO_LATE" in (too_much.reason or "")
    await venue.set_mid("AAPL", D("190.00"))


async def test_replacing_an_order_alpaca_does_not_know_is_refused_as_not_found(pair: AlpacaPair) -> None:
    unknown = _limit("10", "150.00")  # never sent
    ack = await pair.broker.replace_order(
        ReplaceOrder(orig_cl_ord_id=unknown.cl_ord_id, cl_ord_id=f"{unknown.cl_ord_id}.1", **unknown.terms())
    )
    assert not ack.accepted and ack.not_found and ack.cl_ord_id == unknown.cl_ord_id
    assert ack.reason == f"UNKNOWN_ORDER: Alpaca has no {unknown.cl_ord_id}"


async def test_quotes_are_published_as_source_alpaca(pair: AlpacaPair) -> None:
    await pair.venue.set_mid("AAPL", D("190.00"))
    poller = pair.broker.quote_poller
    assert poller is not None and poller.source == pair.name
    assert await poller.poll() == len([i for i in pair.instruments or [] if i.instrument_class.value == "EQUITY"])
    quotes = {q.symbol: q for q in pair.published}  # type: ignore[attr-defined]
    assert "EURUSD" not in quotes  # Alpaca has no FX
    aapl = quotes["AAPL"]
    assert (aapl.bid, aapl.ask, aapl.source) == (D("189.99"), D("190.01"), pair.name)
    assert 0 <= (utcnow() - aapl.at).total_seconds() < 60  # the venue's quote time, not a default or a day off


async def test_what_alpaca_cannot_take_is_refused_before_sending(pair: AlpacaPair) -> None:
    sent = pair.venue.requests.get("POST /v2/orders", 0)
    pegged = _limit("1", "150").model_copy(update={"type": OrderType.PEGGED, "peg_type": PegType.MIDPOINT})
    gtd = _limit("1", "150").model_copy(update={"time_in_force": TimeInForce.GTD, "expire_at": utcnow()})
    for order in (pegged, gtd):
        ack = await pair.broker.submit_order(order)
        assert not ack.accepted and (ack.reason or "").startswith("UNSUPPORTED")
    assert pair.venue.requests.get("POST /v2/orders", 0) == sent


async def test_positions_and_account_come_from_alpaca(pair: AlpacaPair, reports: ReportCollector) -> None:
    await pair.venue.set_mid("AAPL", D("190.00"))
    buy = _limit("30", "191.00")
    sell = _limit("10", "189.00", side=OrderSide.SELL)
    for order in (buy, sell):
        assert (await pair.broker.submit_order(order)).accepted
    [position] = [p for p in await pair.broker.positions() if p.symbol == "AAPL"]
    assert position.qty == D(20) and position.account == pair.settings.account
    account = await pair.broker.account()
    assert account.status == "ACTIVE" and not account.trading_blocked
    assert account.cash == D(1_000_000) - D(30) * D("190.01") + D(10) * D("189.99")


async def test_wrong_keys_are_unavailable_never_a_rejection(pair: AlpacaPair) -> None:
    broker = pair.new_broker(secret_key=SecretStr("wrong"))
    try:
        with pytest.raises(BrokerUnavailable, match="not authorized"):
            await broker.submit_order(_limit("1", "150.00"))
        with pytest.raises(BrokerUnavailable):
            await broker.get_order_status(_cid())
    finally:
        await broker.close()


async def test_storage_failure_is_unavailable(pair: AlpacaPair, database_url: str) -> None:
    working = _limit("1", "150.00")
    assert (await pair.broker.submit_order(working)).accepted
    closed = AsyncConnectionPool(database_url, open=False)
    broker = AlpacaBroker(pair.settings, store=AlpacaStore(closed, broker=pair.name), name=pair.name)
    cancel = CancelOrder(cl_ord_id=working.cl_ord_id, symbol="AAPL", side=OrderSide.BUY, qty=D(1))
    try:
        with pytest.raises(BrokerUnavailable, match="storage failed"):
            await broker.submit_order(_limit("1", "150.00"))
        with pytest.raises(BrokerUnavailable, match="storage failed"):
            await broker.cancel_order(cancel)
        with pytest.raises(BrokerUnavailable, match="storage failed"):
            await broker.get_order_status(working.cl_ord_id)
    finally:
        await broker.close()


async def test_the_registry_builds_the_adapter_from_settings_and_refuses_missing_keys(
    pool: AsyncConnectionPool, instruments: InstrumentCatalog
) -> None:
    from brokers import BROKERS, BrokerContext
    from core.errors import ConfigError
    from core.settings import AlpacaSettings, Settings

    spec = BROKERS["alpaca"]
    assert spec.session_check is not None and OrderType.PEGGED not in spec.capabilities.order_types
    settings = Settings(alpaca=AlpacaSettings(key_id=SecretStr("PK1"), secret_key=SecretStr("s")))
    broker = await spec.factory(BrokerContext(settings=settings, instruments=instruments, pool=pool))
    try:
        assert isinstance(broker, AlpacaBroker) and broker.name == "alpaca"
        assert broker.stream.url == "wss://paper-api.alpaca.markets/stream"
    finally:
        await broker.close()
    with pytest.raises(ConfigError, match="EXODUS_ALPACA__KEY_ID"):
        await spec.factory(BrokerContext(settings=Settings(), instruments=instruments, pool=pool))
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        await spec.factory(BrokerContext(settings=settings, instruments=instruments, pool=None))


async def test_following_a_replace_chain_books_the_old_orders_fills_first(
    pair: AlpacaPair, reports: ReportCollector
) -> None:
    """A replace made by an earlier process (or whose answer was lost) after fills nobody heard of."""
    venue, broker = pair.venue, pair.broker
    await venue.set_mid("AAPL", D("190.00"))
    order = _limit("1000", "185.00")
    assert (await broker.submit_order(order)).accepted
    venue.faults.refuse_streams = True
    await venue.drop_streams()
    await eventually(lambda: not broker.stream.listening.is_set())
    await venue.set_mid("AAPL", D("184.00"))  # 500 fill, unheard
    old = await broker.rest.get("/v2/orders:by_client_order_id", params={"client_order_id": order.cl_ord_id})
    patched = await broker.rest.request(
        "PATCH",
        f"/v2/orders/{old['id']}",
        json_body={"qty": "200", "limit_price": "170", "client_order_id": f"{order.cl_ord_id}.1"},
    )
    assert patched["replaces"] == old["id"]
    status = await broker.get_order_status(order.cl_ord_id)
    assert status is not None and status.cl_ord_id == f"{order.cl_ord_id}.1"
    assert (status.cum_qty, status.qty, status.status) == (D(500), D(700), OrderStatus.PARTIALLY_FILLED)
    [replaced] = [r for r in status.reports if r.kind is ReportKind.REPLACED]
    assert replaced.new_qty == D(700) and replaced.cum_qty == D(500)
    assert [r.last_qty for r in status.fills] == [D(500)]
    venue.faults.refuse_streams = False
    await venue.set_mid("AAPL", D("190.00"))
