"""OANDA's prices as risk's reference prices: one ``GET /v3/accounts/{id}/pricing`` per interval.

Every instrument's price is published as a ``Quote`` of source ``oanda`` (the best bid and ask, the price's own
time) through the ``BrokerContext.quotes`` sink, which the worker writes to the quote store. A failed poll is
logged (once per failure streak) and tried again at the next interval; the quotes age meanwhile, and risk refuses
to price with stale ones. A non-tradeable price (market closed, halted) is not published.
"""

from __future__ import annotations

from decimal import Decimal

from brokers.oanda.client import OandaRest
from brokers.oanda.parsing import decimal_of, time_of
from brokers.polling import QuotePoller
from core.domain import utcnow
from core.marketdata import Quote, QuoteSink

__all__ = ["PricePoller"]


class PricePoller(QuotePoller):
    """Publishes the prices of ``symbols`` every ``interval`` seconds."""

    what = "prices"

    def __init__(
        self, rest: OandaRest, sink: QuoteSink, *, symbols: dict[str, str], interval: float, source: str = "oanda"
    ) -> None:
        """Ask ``rest`` for ``symbols`` (Exodus symbol -> OANDA instrument)."""
        super().__init__(sink, interval=interval, source=source, enabled=bool(symbols))
        self._rest = rest
        self._symbols = symbols
        self._from_oanda = {v: k for k, v in symbols.items()}

    async def poll(self) -> int:
        """Ask once and publish what came; the number of quotes published."""
        body = await self._rest.get("/pricing", params={"instruments": ",".join(self._symbols.values())})
        prices = body.get("prices") if isinstance(body, dict) else None
        count = 0
        for price in prices or []:
            if not isinstance(price, dict):
                continue
            symbol = self._from_oanda.get(str(price.get("instrument")))
            if symbol is None or price.get("tradeable") is False:
                continue
            bid = _best(price.get("bids"))
            ask = _best(price.get("asks"))
            if bid is None and ask is None:
                continue
            at = min(time_of(price.get("time")) or utcnow(), utcnow())
            await self._sink(Quote(symbol=symbol, source=self.source, bid=bid, ask=ask, at=at))
            count += 1
        self.published += count
        return count


def _best(buckets: object) -> Decimal | None:
    """The first (best) price of a list of PriceBuckets, if positive."""
    if not isinstance(buckets, list) or not buckets or not isinstance(buckets[0], dict):
        return None
    price = decimal_of(buckets[0].get("price"))
    return price if price is not None and price > 0 else None
