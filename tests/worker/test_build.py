"""The worker's wiring: what its brokers publish reaches its quote sink (and from there the quote store)."""

from __future__ import annotations

from core.domain import ExecutionReport
from core.instruments import InstrumentCatalog
from core.marketdata import Quote
from core.settings import Settings, WorkerSettings
from worker.build import build_brokers


async def test_the_brokers_the_worker_builds_publish_their_quotes_to_its_sink(
    settings: Settings, instruments: InstrumentCatalog
) -> None:
    published: list[Quote] = []

    async def sink(quote: Quote) -> None:
        published.append(quote)

    async def reports(report: ExecutionReport) -> None:
        pass

    own = settings.model_copy(update={"worker": WorkerSettings(brokers=["paper"], metrics_port=0)})
    brokers = await build_brokers(own, instruments=instruments, pool=None, quotes=sink)
    paper = brokers["paper"]
    await paper.start(reports)  # the venue publishes its whole book when it starts ...
    try:
        assert {q.symbol for q in published} == set(instruments.symbols())
        assert {q.source for q in published} == {"paper"}
        published.clear()
        await paper.venue.set_mid("NVDA", instruments.get("NVDA").initial_price + 1)  # type: ignore[attr-defined,union-attr]
        [moved] = published  # ... and every move after that
        assert moved.symbol == "NVDA" and moved.mid == instruments.get("NVDA").initial_price + 1  # type: ignore[union-attr]
    finally:
        await paper.close()
