"""Market data as risk sees it: the latest quote of every source, with its age and whether it is stale."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from api.auth import requires
from api.deps import InstrumentsDep, PoolDep
from api.edge import EdgeRoute
from api.schemas import ErrorBody, Identifier, Reason
from brokers import capabilities
from core.auth import Permission, Principal
from core.domain import utcnow
from core.marketdata import MarketData, PriceBook, QuoteView, Reference, ReferenceStatus
from store.quotes import fetch_quotes

__all__ = ["router"]

router = APIRouter(prefix="/quotes", tags=["quotes"], route_class=EdgeRoute)


def _market(request: Request) -> MarketData:
    return request.app.state.market  # type: ignore[no-any-return]


MarketDep = Annotated[MarketData, Depends(_market)]


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class QuotePublic(_Out):
    """One source's latest quote of one symbol."""

    symbol: str
    source: str
    bid: Decimal | None
    ask: Decimal | None
    mid: Decimal | None
    last: Decimal | None
    #: The source's time, and when Exodus received the quote.
    at: datetime
    received_at: datetime
    age_seconds: float
    max_age_seconds: float
    stale: bool

    @classmethod
    def of(cls, v: QuoteView) -> QuotePublic:
        """From what the market data service answered."""
        q = v.quote
        return cls(
            symbol=q.symbol,
            source=q.source,
            bid=q.bid,
            ask=q.ask,
            mid=q.mid,
            last=q.last,
            at=q.at,
            received_at=v.received_at,
            age_seconds=round(v.age_seconds, 3),
            max_age_seconds=v.max_age_seconds,
            stale=v.stale,
        )


class QuotesPublic(_Out):
    """A list of quotes."""

    data: list[QuotePublic]
    count: int


class BrokerPricePublic(_Out):
    """What the risk check would use for an order in the symbol at one broker."""

    broker: str
    source: str
    status: ReferenceStatus
    #: The reference price (a fresh quote's mid), or null.
    price: Decimal | None
    age_seconds: float | None
    #: Limit and stop orders are valued at their own price when the status is not OK.
    own_price_without_quote: bool
    message: str | None = None

    @classmethod
    def of(cls, ref: Reference) -> BrokerPricePublic:
        """From the market data service's answer."""
        return cls(
            broker=ref.broker,
            source=ref.source,
            status=ref.status,
            price=ref.price,
            age_seconds=round(ref.view.age_seconds, 3) if ref.view else None,
            own_price_without_quote=ref.own_price_without_quote,
            message=ref.problem(),
        )


class SymbolQuotesPublic(_Out):
    """Every source's quote of one symbol, and the price risk would use at each broker."""

    symbol: str
    quotes: list[QuotePublic]
    brokers: list[BrokerPricePublic] = Field(default_factory=list)


def _json(body: BaseModel) -> JSONResponse:
    return JSONResponse(content=body.model_dump(mode="json", by_alias=True))


@router.get("", response_model=QuotesPublic)
async def list_quotes(
    _: Annotated[Principal, requires(Permission.MARKET_DATA_READ)],
    pool: PoolDep,
    market: MarketDep,
    symbol: Identifier | None = None,
    source: Identifier | None = None,
    stale: Annotated[bool | None, Query(description="only stale (true) or only fresh (false) quotes")] = None,
) -> JSONResponse:
    """The latest quote of every source and symbol (optionally one symbol or source), with age and staleness."""
    async with pool.connection() as conn:
        views = market.views(await fetch_quotes(conn, symbol=symbol.upper() if symbol else None, source=source))
    if stale is not None:
        views = [v for v in views if v.stale is stale]
    data = [QuotePublic.of(v) for v in views]
    return _json(QuotesPublic(data=data, count=len(data)))


@router.get("/{symbol}", response_model=SymbolQuotesPublic)
async def symbol_quotes(
    _: Annotated[Principal, requires(Permission.MARKET_DATA_READ)],
    symbol: str,
    pool: PoolDep,
    market: MarketDep,
    instruments: InstrumentsDep,
    broker: Identifier | None = None,
) -> JSONResponse:
    """One symbol: every source's quote, and the reference price risk would use at each broker (or ``broker``)."""
    symbol = symbol.upper()
    if instruments.get(symbol) is None:
        message = f"symbol: unknown symbol {symbol!r}"
        reason = Reason(code="UNKNOWN_INSTRUMENT", field="symbol", message=message)
        body = ErrorBody(status="not_found", message=message, reasons=[reason])
        return JSONResponse(status_code=404, content=body.model_dump(mode="json", exclude_none=True))
    known = sorted(capabilities())
    if broker is not None and broker not in known:
        message = f"broker: unknown broker {broker!r}; known: {', '.join(known)}"
        reason = Reason(code="UNKNOWN_BROKER", field="broker", message=message)
        body = ErrorBody(status="rejected", message=message, reasons=[reason])
        return JSONResponse(status_code=422, content=body.model_dump(mode="json", exclude_none=True))
    now = utcnow()
    async with pool.connection() as conn:
        stored = await fetch_quotes(conn, symbol=symbol)
    refs = [PriceBook(market, b, stored, now).reference(symbol) for b in ([broker] if broker else known)]
    return _json(
        SymbolQuotesPublic(
            symbol=symbol,
            quotes=[QuotePublic.of(market.view(sq, now)) for sq in stored],
            brokers=[BrokerPricePublic.of(r) for r in refs],
        )
    )
