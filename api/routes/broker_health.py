"""Broker health for the console: sessions (FIX logon, REST stream state and last call), MT5 terminals, quote age.

Read from what the workers and the bridge record: ``broker_sessions`` (each stateful session's state, its owner's
heartbeat and, for REST brokers, when a call last succeeded), ``mt5_accounts`` (each EA's last heartbeat) and
``market_quotes`` (each source's newest quote). Ages are the database's clock (sessions, terminals) or this
process's (quotes, as risk computes them). A state is one word the console colours: ``UP``, ``DOWN``, and
``NO_OWNER`` (the worker that owns a session stopped refreshing it: risk refuses its new orders) for sessions;
``UP``, ``DOWN``, ``SILENT`` for terminals; ``OK``, ``STALE`` (some symbols too old to price with), ``SILENT``
(every one) for quote sources.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from api.auth import requires
from api.deps import PoolDep
from api.edge import EdgeRoute
from brokers.mt5.tables import terminals
from brokers.sessions import OWNER_STALE_SECONDS
from core.auth import Permission, Principal
from core.domain import utcnow
from core.marketdata import MarketData
from store.quotes import fetch_quotes
from store.sessions import SessionStatus, sessions

__all__ = ["router"]

router = APIRouter(prefix="/brokers", tags=["brokers"], route_class=EdgeRoute)


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class SessionHealth(_Out):
    """A broker's session (FIX: the logon; REST brokers: their event stream) and its owner."""

    broker: str
    session: str
    state: Literal["UP", "DOWN", "NO_OWNER"]
    logged_on: bool
    detail: str
    #: When logged on/off last changed.
    changed_at: datetime
    heartbeat_at: datetime
    heartbeat_age_seconds: float
    #: REST brokers: when a call last succeeded (null: none yet, or the broker has no REST calls).
    last_call_at: datetime | None
    last_call_age_seconds: float | None

    @classmethod
    def of(cls, row: SessionStatus) -> SessionHealth:
        """From the stored row."""
        state: Literal["UP", "DOWN", "NO_OWNER"] = (
            "NO_OWNER" if row["heartbeat_age"] > OWNER_STALE_SECONDS else "UP" if row["logged_on"] else "DOWN"
        )
        return cls(
            broker=row["broker"],
            session=row["session"],
            state=state,
            logged_on=row["logged_on"],
            detail=row["detail"],
            changed_at=row["changed_at"],
            heartbeat_at=row["heartbeat_at"],
            heartbeat_age_seconds=round(row["heartbeat_age"], 3),
            last_call_at=row["last_call_at"],
            last_call_age_seconds=None if row["last_call_age"] is None else round(row["last_call_age"], 3),
        )


class TerminalHealth(_Out):
    """An MT5 bridge account's terminal (the EA) and its last heartbeat."""

    account: str
    state: Literal["UP", "DOWN", "SILENT"]
    connected: bool
    terminal_id: str | None
    ea_version: str | None
    login: int | None
    server: str | None
    last_heartbeat_at: datetime | None
    heartbeat_age_seconds: float | None
    heartbeat_timeout_seconds: float
    last_poll_at: datetime | None
    disconnected_at: datetime | None


class QuoteSourceHealth(_Out):
    """A market data source: how old its newest quote is, and how many of its symbols are too old to price with."""

    source: str
    state: Literal["OK", "STALE", "SILENT"]
    symbols: int
    stale_symbols: int
    #: Age of its newest quote (null: it never published one); how old is too old depends on the instrument.
    newest_age_seconds: float | None


class BrokerHealth(_Out):
    """Everything the broker health page shows."""

    at: datetime
    sessions: list[SessionHealth]
    terminals: list[TerminalHealth]
    quotes: list[QuoteSourceHealth]


@router.get("/health", response_model=BrokerHealth)
async def broker_health(
    pool: PoolDep, request: Request, principal: Annotated[Principal, requires(Permission.SYSTEM_READ)]
) -> JSONResponse:
    """Broker sessions, MT5 terminals and quote sources, each with its state.

    FIX sessions' logon state, REST brokers' stream state and last successful call, MT5 terminals' last heartbeat
    (of the accounts in scope), and quote age per source.
    """
    market: MarketData = request.app.state.market
    async with pool.connection() as conn:
        session_rows = await sessions(conn)
        terminal_rows = await terminals(conn)
        stored = await fetch_quotes(conn)
    now = utcnow()
    ages = market.source_ages(stored, now=now)
    newest = {src: now for src in ages}  # sources with quotes; silent_sources adds the expected ones never heard
    quotes: list[QuoteSourceHealth] = []
    for source in sorted(set(ages) | set(market.silent_sources(newest, now=now))):
        if source not in ages:
            quotes.append(
                QuoteSourceHealth(
                    source=source,
                    state="SILENT",
                    symbols=0,
                    stale_symbols=0,
                    newest_age_seconds=None,
                )
            )
            continue
        age, count, stale = ages[source]
        state: Literal["OK", "STALE", "SILENT"] = "SILENT" if stale == count else "STALE" if stale else "OK"
        quotes.append(
            QuoteSourceHealth(
                source=source,
                state=state,
                symbols=count,
                stale_symbols=stale,
                newest_age_seconds=round(age, 3),
            )
        )
    terminal_health = []
    for t in terminal_rows:
        if not principal.scope.allows_account(t["account"]):
            continue
        age = t["age"]
        silent = age is None or age > t["heartbeat_timeout_s"]
        terminal_health.append(
            TerminalHealth(
                account=t["account"],
                state="DOWN" if not t["connected"] else "SILENT" if silent else "UP",
                connected=t["connected"],
                terminal_id=t["terminal_id"],
                ea_version=t["ea_version"],
                login=t["login"],
                server=t["server"],
                last_heartbeat_at=t["last_heartbeat_at"],
                heartbeat_age_seconds=None if age is None else round(age, 3),
                heartbeat_timeout_seconds=t["heartbeat_timeout_s"],
                last_poll_at=t["last_poll_at"],
                disconnected_at=t["disconnected_at"],
            )
        )
    body = BrokerHealth(
        at=now,
        sessions=[SessionHealth.of(r) for r in session_rows if principal.scope.allows_broker(r["broker"])],
        terminals=terminal_health,
        quotes=quotes,
    )
    return JSONResponse(content=body.model_dump(mode="json", by_alias=True))
