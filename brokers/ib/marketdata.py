"""IB's quotes as risk's reference prices: ``reqMktData`` snapshots (``reqTickers``) every interval.

Contracts are qualified once (``reqContractDetails``: IB's conId). Every symbol's bid/ask/last is published as a
``Quote`` of source ``ib`` through the ``BrokerContext.quotes`` sink. ``market_data_type`` 3 asks for delayed data
(no market data subscription needed). A failed poll is logged once per failure streak and tried again; the quotes
simply age meanwhile, and risk refuses to price with stale ones.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from brokers.ib.parsing import decimal_of
from brokers.polling import QuotePoller as BasePoller
from core.domain import utcnow
from core.marketdata import Quote, QuoteSink

__all__ = ["QuotePoller"]

log = logging.getLogger(__name__)


class QuotePoller(BasePoller):
    """Publishes snapshots of ``contracts`` (Exodus symbol -> ib_async Contract) every ``interval`` seconds."""

    def __init__(
        self,
        ib: Any,
        sink: QuoteSink,
        *,
        contracts: dict[str, Any],
        interval: float,
        timeout: float,
        source: str = "ib",
    ) -> None:
        """Ask ``ib`` (a connected ``ib_async.IB``) for snapshots of ``contracts``."""
        super().__init__(sink, interval=interval, source=source, enabled=bool(contracts))
        self._ib = ib
        self._contracts = contracts
        self._qualified: dict[str, Any] = {}
        self._timeout = timeout

    async def poll(self) -> int:
        """Ask once and publish what came; the number of quotes published."""
        if not self._ib.isConnected():
            return 0
        missing = [s for s in self._contracts if s not in self._qualified]
        if missing:
            qualified = await asyncio.wait_for(
                self._ib.qualifyContractsAsync(*(self._contracts[s] for s in missing)), self._timeout
            )
            for symbol, contract in zip(missing, qualified, strict=True):
                if contract is not None and not isinstance(contract, list):
                    self._qualified[symbol] = contract
        symbols = list(self._qualified)
        if not symbols:
            return 0
        tickers = await asyncio.wait_for(
            self._ib.reqTickersAsync(*(self._qualified[s] for s in symbols)), self._timeout
        )
        by_con = {t.contract.conId: t for t in tickers}
        count = 0
        for symbol in symbols:
            ticker = by_con.get(self._qualified[symbol].conId)
            if ticker is None:
                continue
            bid, ask, last = (_price(ticker.bid), _price(ticker.ask), _price(ticker.last))
            if bid is None and ask is None and last is None:
                continue
            await self._sink(Quote(symbol=symbol, source=self.source, bid=bid, ask=ask, last=last, at=utcnow()))
            count += 1
        self.published += count
        return count


def _price(value: float | None) -> Any:
    if value is None or (isinstance(value, float) and (math.isnan(value) or value <= 0)):
        return None
    return decimal_of(value)
