"""Alpaca's latest quotes as risk's reference prices: one ``GET /v2/stocks/quotes/latest`` per interval.

Every symbol's answer is published as a ``Quote`` of source ``alpaca`` (the quote's own time ``t``) through the
``BrokerContext.quotes`` sink, which the worker writes to the quote store. A failed poll is logged (once per
failure streak) and tried again at the next interval; the quotes simply age meanwhile, and risk refuses to
price with stale ones.
"""

from __future__ import annotations

from brokers.alpaca.client import AlpacaRest
from brokers.alpaca.parsing import decimal_of, time_of
from brokers.polling import QuotePoller as BasePoller
from core.domain import utcnow
from core.marketdata import Quote, QuoteSink

__all__ = ["QuotePoller"]


class QuotePoller(BasePoller):
    """Publishes the latest quotes of ``symbols`` every ``interval`` seconds."""

    what = "the latest quotes"

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
        super().__init__(sink, interval=interval, source=source, enabled=bool(symbols))
        self._rest = rest
        self._symbols = symbols
        self._from_alpaca = {v: k for k, v in symbols.items()}
        self._feed = feed

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
