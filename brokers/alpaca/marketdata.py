"""Alpaca's latest quotes as risk's reference prices: one ``GET /v2/stocks/quotes/latest`` per interval.

Every symbol's answer is published as a ``Quote`` of source ``alpaca`` (the quote's own time ``t``) through the
``BrokerContext.quotes`` sink, which the worker writes to the quote store. A failed poll is logged (once per
failure streak) and tried again at the next interval; the quotes simply age meanwhile, and risk refuses to
price with stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from brokers.alpaca.client import AlpacaRest
from brokers.alpaca.parsing import decimal_of, time_of
from core.domain import utcnow
from core.errors import BrokerUnavailable
from core.marketdata import Quote, QuoteSink

__all__ = ["QuotePoller"]

log = logging.getLogger(__name__)


class QuotePoller:
    """Publishes the latest quotes of ``symbols`` every ``interval`` seconds."""

    def __init__(
        self,
        rest: AlpacaRest,
        sink: QuoteSink,
        *,
        symbols: dict[str, str],
        interval: float,
        feed: str,
        source: str = "alpaca",
    ) -> None:
        """Ask ``rest`` (the market data host) for ``symbols`` (Exodus symbol -> Alpaca symbol)."""
        self._rest = rest
        self._sink = sink
        self._symbols = symbols
        self._from_alpaca = {v: k for k, v in symbols.items()}
        self._interval = interval
        self._feed = feed
        self.source = source
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Quotes published so far.
        self.published = 0

    def start(self) -> None:
        """Start polling."""
        if self._symbols and self._interval > 0:
            self._task = asyncio.create_task(self._run(), name=f"{self.source}-quotes")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll(self) -> int:
        """Ask once and publish what came; the number of quotes published."""
        body = await self._rest.get(
            "/v2/stocks/quotes/latest", params={"symbols": ",".join(self._symbols.values()), "feed": self._feed}
        )
        quotes = body.get("quotes") if isinstance(body, dict) else None
        count = 0
        for alpaca_symbol, q in (quotes or {}).items():
            symbol = self._from_alpaca.get(alpaca_symbol)
            if symbol is None or not isinstance(q, dict):
                continue
            bid, ask = decimal_of(q.get("bp")), decimal_of(q.get("ap"))
            bid = bid if bid and bid > 0 else None
            ask = ask if ask and ask > 0 else None
            if bid is None and ask is None:
                continue
            at = min(time_of(q.get("t")) or utcnow(), utcnow())
            await self._sink(Quote(symbol=symbol, source=self.source, bid=bid, ask=ask, at=at))
            count += 1
        self.published += count
        return count

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self._failing:
                    log.info("%s: latest quotes answer again", self.source)
                self._failing = False
            except asyncio.CancelledError:
                raise
            except (BrokerUnavailable, Exception) as e:
                if not self._failing:
                    log.warning("%s: asking for the latest quotes failed (%s); retrying every interval", self.source, e)
                self._failing = True
            await asyncio.sleep(self._interval)
