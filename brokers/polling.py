"""A broker's reference prices asked for once per interval: what the Alpaca, OANDA and IB quote pollers share.

A subclass says how to ask once (:meth:`QuotePoller.poll`, which publishes each ``Quote`` through the sink the
worker writes to the quote store) and whether there is anything to ask for. A failed poll is logged once per
failure streak (and its end once) and tried again at the next interval; the quotes age meanwhile, and risk
refuses to price with stale ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from core.marketdata import QuoteSink

__all__ = ["QuotePoller"]

log = logging.getLogger(__name__)


class QuotePoller:
    """Calls :meth:`poll` every ``interval`` seconds from :meth:`start` to :meth:`stop`."""

    #: What is asked for, in the log lines ("latest quotes", "prices").
    what = "quotes"

    def __init__(self, sink: QuoteSink, *, interval: float, source: str, enabled: bool = True) -> None:
        """Publish to ``sink`` as ``source``; ``enabled``: whether there is anything to ask for."""
        self._sink = sink
        self._enabled = enabled
        self._interval = interval
        self.source = source
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        #: Quotes published so far.
        self.published = 0

    async def poll(self) -> int:
        """Ask once and publish what came; the number of quotes published."""
        raise NotImplementedError

    def start(self) -> None:
        """Start polling (not when disabled, or with an interval of 0)."""
        if self._enabled and self._interval > 0:
            self._task = asyncio.create_task(self._run(), name=f"{self.source}-quotes")

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
                if self._failing:
                    log.info("%s: %s answer again", self.source, self.what)
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not self._failing:
                    log.warning(
                        "%s: asking for %s failed (%r); trying every %.3gs", self.source, self.what, e, self._interval
                    )
                self._failing = True
            await asyncio.sleep(self._interval)
