"""FIX market data for risk: a top-of-book subscription per symbol, published as ``core.marketdata.Quote``.

After each logon the adapter sends one MarketDataRequest (35=V) per symbol: snapshot plus updates (263=1),
top of book (264=1), incremental refresh (265=1), bid, offer and trade (267/269 = 0, 1, 2). The venue answers
with a MarketDataSnapshotFullRefresh (35=W) and then MarketDataIncrementalRefresh (35=X) messages, or refuses
the symbol with a MarketDataRequestReject (35=Y). The three exist with the same fields in FIX 4.2, 4.4 and 5.0
SP2 (4.2 puts Symbol inside the incremental entries; 4.4 and 5.0 carry the Instrument component there, and the
symbol is also known from the MDReqID).

Each message updates the symbol's book (best bid, best offer, last trade) and publishes a ``Quote`` with the
venue's time: MDEntryDate (272) + MDEntryTime (273) of the entries when present (a time alone takes the date
of the message), else LastUpdateTime (779, 4.4+) or SendingTime (52), else the time of receipt. Quotes go to
the sink through a latest-wins queue per symbol, so a slow sink never holds QuickFIX's thread or builds a
backlog of stale prices; a failing sink is logged and never touches the order session.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal

from brokers.fix.parsing import Tag, parse_decimal, parse_timestamp
from brokers.fix.session import FieldValue, FixMessage
from core.domain import utcnow
from core.marketdata import Quote, QuoteSink

__all__ = ["FixMarketData"]

log = logging.getLogger(__name__)

Send = Callable[[str, list[tuple[int, FieldValue]]], Awaitable[bool]]

#: MDEntryType (269).
_BID, _OFFER, _TRADE = "0", "1", "2"
#: MDUpdateAction (279).
_DELETE = "2"


def _entry_time(entry: dict[int, str], sending_time: datetime | None) -> datetime | None:
    clock = entry.get(Tag.MD_ENTRY_TIME)
    if not clock:
        return None
    day_text = entry.get(Tag.MD_ENTRY_DATE)
    day: date | None = None
    if day_text:
        with contextlib.suppress(ValueError):
            day = datetime.strptime(day_text, "%Y%m%d").date()
    if day is None:
        day = (sending_time or utcnow()).date()
    head, _, frac = clock.partition(".")
    try:
        at = time.fromisoformat(head)
    except ValueError:
        return None
    micro = int((frac + "000000")[:6]) if frac.isdigit() else 0
    return datetime.combine(day, at.replace(microsecond=micro), tzinfo=UTC)


class FixMarketData:
    """Subscriptions of one FIX session and the books they keep current."""

    def __init__(
        self,
        *,
        source: str,
        symbols: list[str],
        to_venue: dict[str, str],
        sink: QuoteSink | None,
    ) -> None:
        """Subscribe to ``symbols`` (Exodus names, mapped with ``to_venue``); publish to ``sink`` as ``source``."""
        self.source = source
        self.symbols = list(dict.fromkeys(symbols))
        self._to_venue = dict(to_venue)
        self._from_venue = {v: k for k, v in to_venue.items()}
        self._sink = sink
        self._ids = itertools.count(1)
        #: MDReqID -> Exodus symbol, for the subscriptions of the current logon.
        self._requests: dict[str, str] = {}
        #: Latest bid, offer and trade per Exodus symbol.
        self.books: dict[str, dict[str, Decimal | None]] = {}
        #: Symbols the venue refused (35=Y), with its reason.
        self.rejected: dict[str, str] = {}
        #: Set when the venue refused MarketDataRequests altogether (35=j / 35=3); no more are sent.
        self.unsupported: str | None = None
        self.published = 0
        self._pending: dict[str, Quote] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start publishing."""
        if self._task is None:
            self._task = asyncio.create_task(self._publish_forever(), name=f"{self.source}-quotes")

    async def stop(self) -> None:
        """Stop publishing (what was not published yet is dropped: quotes are only worth their latest value)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- requests ----------------------------------------------------------------------------------------

    async def subscribe(self, send: Send, *, run: str) -> None:
        """Send one MarketDataRequest per symbol (after a logon: the venue forgot the old ones)."""
        self._requests.clear()
        if self.unsupported is not None:
            log.info("%s: market data not requested: %s", self.source, self.unsupported)
            return
        for symbol in self.symbols:
            req_id = f"MD{run}-{next(self._ids)}"
            self._requests[req_id] = symbol
            fields: list[tuple[int, FieldValue]] = [
                (Tag.MD_REQ_ID, req_id),
                (Tag.SUBSCRIPTION_REQUEST_TYPE, "1"),  # snapshot + updates
                (Tag.MARKET_DEPTH, "1"),  # top of book
                (Tag.MD_UPDATE_TYPE, "1"),  # incremental refresh
                (Tag.NO_MD_ENTRY_TYPES, [[(Tag.MD_ENTRY_TYPE, t)] for t in (_BID, _OFFER, _TRADE)]),
                (Tag.NO_RELATED_SYM, [[(Tag.SYMBOL, self._to_venue.get(symbol, symbol))]]),
            ]
            try:
                await send("V", fields)
            except Exception as e:
                log.warning("%s: market data request for %s not sent: %s", self.source, symbol, e)

    def refused(self, reason: str, *, unsupported: bool) -> None:
        """The venue refused a MarketDataRequest at the session or business level."""
        log.warning("%s: the venue refused a market data request: %s", self.source, reason)
        if unsupported:
            self.unsupported = reason

    # -- answers -----------------------------------------------------------------------------------------

    def _symbol(self, venue_symbol: str | None, req_id: str | None) -> str | None:
        if venue_symbol:
            return self._from_venue.get(venue_symbol, venue_symbol)
        return self._requests.get(req_id or "")

    def on_message(self, msg: FixMessage) -> None:
        """Apply a 35=W, 35=X or 35=Y (never raises: market data must not disturb the order session)."""
        try:
            if msg.msg_type == "Y":
                self._on_reject(msg)
            elif msg.msg_type in ("W", "X"):
                self._on_refresh(msg)
        except Exception:
            log.exception("%s: market data message not understood: %s", self.source, msg.text())

    def _on_reject(self, msg: FixMessage) -> None:
        req_id = msg.get(Tag.MD_REQ_ID)
        symbol = self._requests.pop(req_id or "", None) or msg.get(Tag.SYMBOL) or f"request {req_id}"
        reason = msg.get(Tag.TEXT) or f"MDReqRejReason {msg.get(Tag.MD_REQ_REJ_REASON, '?')}"
        self.rejected[symbol] = reason
        log.warning("%s: the venue refused market data for %s: %s", self.source, symbol, reason)

    def _on_refresh(self, msg: FixMessage) -> None:
        req_id = msg.get(Tag.MD_REQ_ID)
        sending_time = parse_timestamp(msg.get(Tag.LAST_UPDATE_TIME)) or parse_timestamp(msg.get(Tag.SENDING_TIME))
        full = msg.msg_type == "W"
        body_symbol = msg.get(Tag.SYMBOL) if full else None
        touched: dict[str, datetime | None] = {}
        fresh: dict[str, dict[str, Decimal | None]] = {}
        for entry in msg.groups(Tag.NO_MD_ENTRIES):
            symbol = self._symbol(entry.get(Tag.SYMBOL) or body_symbol, req_id)
            kind = entry.get(Tag.MD_ENTRY_TYPE)
            if symbol is None or kind not in (_BID, _OFFER, _TRADE):
                continue
            level = entry.get(Tag.MD_PRICE_LEVEL)
            if level not in (None, "", "1"):
                continue  # deeper than the top of book
            if full and symbol not in fresh:
                fresh[symbol] = {_BID: None, _OFFER: None, _TRADE: self.books.get(symbol, {}).get(_TRADE)}
            book = fresh[symbol] if full else self.books.setdefault(symbol, {_BID: None, _OFFER: None, _TRADE: None})
            price = parse_decimal(entry.get(Tag.MD_ENTRY_PX))
            if not full and entry.get(Tag.MD_UPDATE_ACTION) == _DELETE:
                if kind != _TRADE:
                    book[kind] = None
            elif price is not None and price > 0:
                current = book.get(kind)
                if full and current is not None and kind != _TRADE:
                    # A snapshot deeper than asked for: keep the best level.
                    price = max(price, current) if kind == _BID else min(price, current)
                book[kind] = price
            at = _entry_time(entry, sending_time)
            previous = touched.get(symbol)
            touched[symbol] = at if previous is None or (at is not None and at > previous) else previous
        if full and not fresh and body_symbol:
            symbol = self._symbol(body_symbol, req_id)
            if symbol is not None:  # an empty book
                fresh[symbol] = {_BID: None, _OFFER: None, _TRADE: self.books.get(symbol, {}).get(_TRADE)}
                touched[symbol] = None
        self.books.update(fresh)
        for symbol, at in touched.items():
            book = self.books[symbol]
            quote = Quote(
                symbol=symbol,
                source=self.source,
                bid=book.get(_BID),
                ask=book.get(_OFFER),
                last=book.get(_TRADE),
                at=at or sending_time or utcnow(),
            )
            self._pending[symbol] = quote
        if touched:
            self._wakeup.set()

    async def _publish_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            pending, self._pending = self._pending, {}
            for quote in pending.values():
                if self._sink is None:
                    continue
                try:
                    await self._sink(quote)
                    self.published += 1
                except Exception:
                    log.exception("%s: publishing the quote of %s failed", self.source, quote.symbol)
