"""The shared quote poller: one ask per interval, a failure streak logged once and its end once, a clean stop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from brokers.polling import QuotePoller
from core.errors import BrokerUnavailable
from core.marketdata import Quote

pytestmark = pytest.mark.asyncio


class Flaky(QuotePoller):
    what = "test quotes"

    def __init__(self, outcomes: list[bool], **kwargs: object) -> None:
        async def sink(quote: Quote) -> None:
            raise AssertionError("nothing is published here")

        super().__init__(sink, source="flaky", **kwargs)  # type: ignore[arg-type]
        self.outcomes = outcomes
        self.asked = 0
        self.done = asyncio.Event()

    async def poll(self) -> int:
        self.asked += 1
        if self.asked >= len(self.outcomes):
            self.done.set()
        if not self.outcomes[min(self.asked, len(self.outcomes)) - 1]:
            raise BrokerUnavailable("no answer")
        return 0


async def test_a_failure_streak_is_logged_once_and_its_end_once(caplog: pytest.LogCaptureFixture) -> None:
    poller = Flaky([False, False, False, True, True], interval=0.01)
    with caplog.at_level(logging.INFO, logger="brokers.polling"):
        poller.start()
        await asyncio.wait_for(poller.done.wait(), 5)
        await poller.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "brokers.polling"]
    assert [line for line in lines if "failed" in line] == [
        "flaky: asking for test quotes failed (BrokerUnavailable('no answer')); trying every 0.01s"
    ]
    assert lines.count("flaky: test quotes answer again") == 1
    asked = poller.asked
    await asyncio.sleep(0.05)
    assert poller.asked == asked  # stopped: asks no more


async def test_nothing_is_asked_when_disabled_or_without_an_interval() -> None:
    for poller in (Flaky([True], interval=0.01, enabled=False), Flaky([True], interval=0)):
        poller.start()
        await asyncio.sleep(0.03)
        await poller.stop()
        assert poller.asked == 0
