"""IB's quotes as risk's reference prices: ``reqMktData`` snapshots (``reqTickers``) every interval.

Contracts are qualified once (``reqContractDetails``: IB's conId). Every symbol's bid/ask/last is published as a
``Quote`` of source ``ib`` through the ``BrokerContext.quotes`` sink. ``market_data_type`` 3 asks for delayed data
(no market data subscription needed). A failed poll is logged once per failure streak and tried again; the quotes
simply age meanwhile, and risk refuses to price with stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any

from brokers.ib.parsing import decimal_of
from core.domain import utcnow
from core.marketdata import Quote, QuoteSink

__all__ = ["QuotePoller"]

log = logging.getLogger(__name__)


class QuotePoller:
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
        self._ib = ib
        self._sink = sink
        self._contracts = contracts
        self._qualified: dict[str, Any] = {}
        self._interval = interval
        self._timeout = timeout
        self.source = source
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Quotes published so far.
        self.published = 0

    def start(self) -> None:
        """Start polling."""
        if self._contracts and self._interval > 0:
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

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self._failing:
                    log.info("%s: quotes answer again", self.source)
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._failing:
                    log.warning("%s: asking for quotes failed (%r); trying every %.1fs", self.source, e, self._interval)
                self._failing = True
            await asyncio.sleep(self._interval)


def _price(value: float | None) -> Any:
    if value is None or (isinstance(value, float) and (math.isnan(value) or value <= 0)):
        return None
    return decimal_of(value)
