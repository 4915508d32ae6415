"""The risk activities: gather the account state, run the pluggable check, record the decision and reserve.

``check_order`` runs as a local activity of the order workflow (the decision is what the REST caller waits
for). It reads the policy and the account, decides, takes the counters that span accounts, writes the order
row with its decision, takes the order's reservation (what it holds of position, exposure and buying power
until it is final) and appends an audit entry. The writes are one transaction: a crash leaves all of it or
none.

**Serialization: per account, never firm-wide.** A decision is two statements (SQL functions of migration
0011), each its own transaction:

1. ``risk_gather`` waits for the account's and the client's advisory locks (so it sees the last decision of
   either) and reads everything in one query, one snapshot: trading states, positions, working orders, equity
   marks, the client's recent, working and duplicate orders, the stored decision and the policy version. A
   booking that commits meanwhile is seen whole or not at all (bookings only shrink an account's worst case).
2. The worker decides (``core.risk``), then ``risk_record`` takes the account's and the client's locks again,
   checks that neither had another decision in between (``risk_serial``; else the decision is made again),
   takes the counters that span accounts (``risk_take``: the firm-wide and per-broker totals, each account's
   contribution replaced under the total's row lock, and the per-symbol and global velocity), and writes the
   order row, the reservation, the equity marks and the audit entry.

Decisions for different accounts run in parallel; the only firm-wide locks (the totals' rows and the audit
chain) are held inside one statement, never across a round trip to the worker. If a total would be breached,
``risk_take`` aborts the statement and the decision is made again "carefully": in one transaction that holds
the account's locks and waits for the counters' answer, so the refusal names the limit and the figures.

A retry of ``check_order`` returns the stored decision only when it was made for the same request (same
request hash); a stored decision for other terms is never adopted (``IDEMPOTENCY_CONFLICT``, no reservation).
Nor is a decision recorded for an order whose row its workflow has already booked without one (a slow attempt
the workflow gave up on, committing after the order closed) or whose row holds other terms: ``risk_record``
refuses it under the row's lock and the attempt answers ``IDEMPOTENCY_CONFLICT``, reserving nothing.
The check is total: an arithmetic failure is a denial (``RISK_CHECK_FAILED``), never an exception. The
broker's session check runs on the decision's own connection.

**Prices.** Reference prices, position marks and FX rates come from the market data service's quote store
(``core/marketdata.py``), through one seam, ``ReferenceData`` (``reference_price`` and ``mark`` of a symbol
for a broker, ``fx_rate`` between two currencies for a broker). Its one implementation,
``QuoteReferenceData``, answers from the quotes the decision read in its own gather statement (the
``market_quotes`` rows of the order's symbol, of the account's positions and of the FX pairs to the policy
currency, read with ``risk_gather`` in one statement on the decision's connection: no other connection, no
other lock), through ``PriceBook``: the order's own broker's quote or the source configured for the
instrument, never the simulated feed for a real broker, stale past the instrument class's age. No fresh quote
is a denial (``NO_REFERENCE_PRICE`` / ``STALE_REFERENCE_PRICE``, naming the source and the age) unless the
class lets a limit or stop order go at its own price; no rate is a denial (``NO_FX_RATE``), never a
conversion at 1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

import psycopg
from pydantic import BaseModel, ConfigDict
from temporalio import activity

from brokers import SessionCheck
from brokers.base import BrokerCapabilities
from core.audit import audit_entry
from core.domain import OrderRequest, OrderSide, RiskDecision, RiskReason, TradingState, utcnow
from core.instruments import InstrumentCatalog
from core.legtrigger import TriggerQuote
from core.marketdata import MarketData, PriceBook, Quote, StoredQuote
from core.metrics import ORDER_LATENCY
from core.risk import (
    AccountState,
    Exposure,
    Limits,
    PolicySet,
    PositionView,
    ReasonCode,
    ReservationView,
    RiskCheck,
    account_equity,
    account_exposure,
    basic_check,
    exposure_legs,
    linked_group,
    list_exit_notional,
    order_reduces,
    valuation_price,
    velocity_message,
)
from core.settings import Settings
from store import Conn, Pool
from store import risk as risk_store
from store.audit import queue_audit
from store.orders import received_row
from store.policy import PolicyStore
from store.quotes import fetch_quotes
from store.risk import GatherRow

__all__ = [
    "AmendCheck",
    "TrailQuote",
    "TrailQuoteRequest",
    "Priced",
    "QuoteReferenceData",
    "ReferenceData",
    "RiskActivities",
    "RiskGatherer",
]

_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_LIMIT_BREACH = "exodus-risk-limit"
_RETRY = "exodus-risk-retry"
#: risk_record found the new order's row already booked by its workflow (closed), or holding other terms.
_CLOSED = "exodus-risk-closed"
#: Decisions of one account racing each other: after this many, decide inside one locked transaction.
_OPTIMISTIC_ATTEMPTS = 8
#: Codes of the totals across accounts, and how many other accounts a full total refreshes at most.
_TOTALS = {ReasonCode.FIRM_MAX_GROSS_EXPOSURE, ReasonCode.FIRM_MAX_OPEN_NOTIONAL, ReasonCode.BROKER_MAX_OPEN_NOTIONAL}
_REFRESH_ACCOUNTS = 20
D0 = Decimal(0)
D1 = Decimal(1)

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ prices


class Priced(NamedTuple):
    """A price or rate, or why there is none (a reason code and message the check reports)."""

    value: Decimal | None
    code: str | None = None
    message: str | None = None
    #: The market data source asked and the age of its quote in seconds (None: no quote, or not a quote).
    source: str | None = None
    age_seconds: float | None = None


class ReferenceData(Protocol):
    """The one seam between risk and market data: what a decision knows of prices and rates."""

    def reference_price(self, symbol: str, broker: str) -> Priced:
        """The price risk values an order for ``symbol`` at ``broker`` at (a fresh quote; quote currency)."""
        ...

    def mark(self, symbol: str, broker: str) -> Priced:
        """The price a position in ``symbol`` is marked at for ``broker`` (the last known one will do)."""
        ...

    def fx_rate(self, base: str, quote: str, broker: str) -> Priced:
        """How many units of ``quote`` one unit of ``base`` is worth, from quotes ``broker`` may use."""
        ...

    def own_price_without_quote(self, symbol: str) -> bool:
        """Whether a limit or stop order in ``symbol`` may be valued at its own price without a fresh quote."""
        ...


class QuoteReferenceData:
    """``ReferenceData`` from the quote store: the quotes one decision read, seen through ``PriceBook``.

    One ``PriceBook`` per broker asked (the sources a broker may be priced by differ: a real broker is never
    priced, marked or converted off the simulated feed). Built per decision from the rows read with its
    other reads, so nothing here touches Postgres.
    """

    def __init__(self, market: MarketData, quotes: Iterable[StoredQuote], now: datetime) -> None:
        """Answer from ``quotes`` (read with the decision), aged as of ``now``."""
        self.market = market
        self.now = now
        self._quotes = list(quotes)
        self._books: dict[str, PriceBook] = {}

    def book(self, broker: str) -> PriceBook:
        """The price book of ``broker``'s orders."""
        book = self._books.get(broker)
        if book is None:
            book = self._books[broker] = PriceBook(self.market, broker, self._quotes, self.now)
        return book

    def reference_price(self, symbol: str, broker: str) -> Priced:
        """The mid of a fresh quote from the price source, or NO/STALE_REFERENCE_PRICE naming source and age."""
        ref = self.book(broker).reference(symbol)
        age = ref.view.age_seconds if ref.view is not None else None
        if ref.price is not None:
            return Priced(ref.price, source=ref.source, age_seconds=age)
        return Priced(None, ref.status, ref.problem(), source=ref.source, age_seconds=age)

    def mark(self, symbol: str, broker: str) -> Priced:
        """The price source's fresh quote, else the freshest quote of any source ``broker`` may use."""
        value = self.book(broker).mark(symbol)
        return Priced(value) if value else Priced(None, ReasonCode.NO_REFERENCE_PRICE, f"no quote for {symbol}")

    def fx_rate(self, base: str, quote: str, broker: str) -> Priced:
        """From the FX pairs' marks, direct (``BASEQUOTE``) or inverted (``QUOTEBASE``); else NO_FX_RATE."""
        value = self.book(broker).rate(base, quote)
        if value:
            return Priced(value)
        return Priced(None, ReasonCode.NO_FX_RATE, f"no FX rate from {base} to {quote} (no quote of either pair)")

    def own_price_without_quote(self, symbol: str) -> bool:
        """Per instrument class (``market_data.classes``)."""
        return self.market.own_price_without_quote(symbol)


def _quote(row: GatherRow) -> StoredQuote:
    # A 'Q' row of the gather statement: source in ``broker``, bid/ask/last in qty/price/extra.
    quote = Quote.model_construct(
        symbol=row["symbol"],
        source=row["broker"],
        bid=row["qty"],
        ask=row["price"],
        last=row["extra"],
        at=row["quoted_at"],
    )
    return StoredQuote(quote, row["received_at"])


# ------------------------------------------------------------------------------------------------ gathering


class AmendCheck(BaseModel):
    """Input of ``check_amend``: the order as it would be after the amend, and what has filled."""

    model_config = ConfigDict(frozen=True)

    order: OrderRequest
    requested_by: str
    filled_qty: Decimal = Decimal(0)
    #: The order's version (its event count) the check is made for. The hold it takes is stamped with it:
    #: a booking of this version or an older one (in flight while the check ran) leaves the hold alone.
    #: None (an older caller): any booking outside PENDING_UPDATE sets the terms, as before.
    version: int | None = None


class TrailQuoteRequest(BaseModel):
    """Input of ``trail_quote``: the price an emulated trailing stop follows (its broker's quote of its symbol)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    broker: str
    side: OrderSide


class TrailQuote(BaseModel):
    """The side's price (a sell's bid, a buy's ask; the last trade or the mid when the quote lacks that side).

    ``problem`` says why there is no usable price (no quote, or a stale one); ``price`` is then None.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    price: Decimal | None = None
    at: datetime | None = None
    problem: str | None = None


@dataclass
class Gathered:
    """What one decision read: limits, state, and what the activity needs besides."""

    limits: Limits
    state: AccountState
    policy: PolicySet
    #: Equity marks to store (None: the stored ones are current).
    marks: tuple[Decimal, Decimal] | None
    #: The order's reservation row as it stands (amends).
    hold: GatherRow | None
    #: The decision already stored for this order id (a retry, or a reused key), with its request hash.
    stored: dict[str, Any] | None = None
    #: How many decisions the account and the client had when this one read them (risk_serial).
    seen: dict[str, int] | None = None


class RiskGatherer:
    """Reads everything a decision needs, inside the caller's transaction."""

    def __init__(
        self,
        *,
        settings: Settings,
        instruments: InstrumentCatalog,
        capabilities: Mapping[str, BrokerCapabilities],
        market: MarketData,
        session_checks: Mapping[str, SessionCheck] | None = None,
        policy: PolicyStore | None = None,
        pool: Pool | None = None,
    ) -> None:
        """Build the gatherer; prices come from ``market`` (the quote store, read with the decision's reads)."""
        self.market = market
        self.instruments = instruments
        self.capabilities = capabilities
        self.session_checks = session_checks or {}
        self.policy = policy or PolicyStore(settings.risk)
        #: Prices a position at this broker's reference when nothing else says which (refreshing totals).
        self.default_broker = settings.default_broker

    async def gather(self, conn: Conn, order: OrderRequest, *, amend: bool = False) -> tuple[Limits, AccountState]:
        """The effective limits and the account state for ``order`` (excluding its own reservation)."""
        g = await self.gather_all(conn, order, amend=amend)
        return g.limits, g.state

    async def gather_all(
        self, conn: Conn, order: OrderRequest, *, amend: bool = False, filled_qty: Decimal = D0
    ) -> Gathered:
        """Take the account's and the client's locks and read everything for one decision.

        One statement (``risk_gather()``, migration 0011, with the quotes that price the decision): the
        locks, then every read from one snapshot. The reads use the cached policy's windows; if the policy
        changed meanwhile, they are made again.
        """
        while True:
            cached = self.policy.cached
            inst = self.instruments.get(order.symbol)
            limits = cached.limits(order.account, inst, order.broker)
            at = order.received_at
            dup = limits.duplicate_window_seconds
            rows = await risk_store.gather(
                conn,
                account=order.account,
                client=order.client_id,
                order_id=order.order_id,
                symbol=order.symbol,
                broker=order.broker,
                day=utcnow().date(),
                new_order=not amend,
                at=at,
                client_from=at - timedelta(seconds=limits.velocity_per_client.window_seconds),
                dup_from=at - timedelta(seconds=dup) if dup > 0 else None,
                side=order.side.value,
                qty=order.qty,
                price=order.price,
                quote_symbols=[order.symbol, *self.market.conversion_pairs(limits.currency)],
            )
            session_check = self.session_checks.get(order.broker)
            unavailable = await session_check(conn, order.account) if session_check else None
            version = next(int(r["qty"] or 0) for r in rows if r["k"] == "V")
            if version == cached.version:
                g = await self._assemble(order, cached, limits, rows, amend, filled_qty, unavailable)
                if g.state.duplicate_of is not None and dup > 0:
                    # The gather's candidate matched symbol, side, quantity and limit price: confirm every term.
                    confirmed = await risk_store.same_terms_duplicate(
                        conn,
                        client=order.client_id,
                        order_id=order.order_id,
                        since=at - timedelta(seconds=dup),
                        terms=_duplicate_terms(order),
                    )
                    g = replace(g, state=g.state.model_copy(update={"duplicate_of": confirmed}))
                linked = D0
                if order.linked_orders:
                    linked = await risk_store.linked_open_qty(
                        conn, order_ids=order.linked_orders, symbol=order.symbol, side=order.side.value
                    )
                # Other lists' one-cancels-other legs count once each group; only where reducing is judged
                # strictly (an ordinary order is only checked the more for it: no read on the common path).
                if order.linked_orders or order.reduce_only or g.state.trading_state is TradingState.REDUCING:
                    linked += await risk_store.linked_overlap(
                        conn,
                        account=order.account,
                        symbol=order.symbol,
                        side=order.side.value,
                        except_group=linked_group(order),
                    )
                if linked:
                    g = replace(g, state=g.state.model_copy(update={"linked_qty": linked}))
                return g
            await self.policy.load(conn)  # the policy changed: reload it and read again with its windows

    def prices(self, rows: list[GatherRow], now: datetime) -> QuoteReferenceData:
        """The decision's ``ReferenceData``: the quote rows (``Q``) it read, as of ``now``."""
        return QuoteReferenceData(self.market, [_quote(r) for r in rows if r["k"] == "Q"], now)

    def _positions(
        self,
        rows: list[GatherRow],
        policy_set: PolicySet,
        prices: ReferenceData,
        currency: str,
        broker_of: Callable[[str], str],
    ) -> dict[str, PositionView]:
        """The account's positions, marked from the quotes and converted at the rate to the policy's."""
        positions: dict[str, PositionView] = {}
        for row in rows:
            symbol = row["symbol"]
            pinst = self.instruments.get(symbol)
            cls = policy_set.policy.classes.get(pinst.instrument_class) if pinst else None
            broker = broker_of(symbol)
            rate = prices.fx_rate(pinst.quote_currency, currency, broker).value if pinst else D1
            mark = prices.mark(symbol, broker).value if row["qty"] else None
            positions[symbol] = PositionView.model_construct(
                symbol=symbol,
                qty=row["qty"],
                avg_price=row["price"],
                realized_pnl=row["extra"],
                mark=mark,
                quote_rate=rate,
                leverage=cls.leverage if cls else D1,
                currency=pinst.quote_currency if pinst else "",
            )
        return positions

    async def account_rows(self, conn: Conn, account: str) -> list[GatherRow]:
        """An account's positions and working orders, with the quotes that value them (``exposure_of``'s rows)."""
        currency = self.policy.cached.policy.currency.value
        return await risk_store.account_rows(
            conn, account=account, quote_symbols=self.market.conversion_pairs(currency)
        )

    def exposure_of(self, account: str, rows: list[GatherRow]) -> Exposure:
        """An account's worst-case exposure as it stands (positions and working orders; no new order).

        ``rows`` are ``account_rows``: the positions, the working orders and the quotes that value them. A
        position is marked for the broker of its symbol's working orders, else for the default broker.
        """
        policy_set = self.policy.cached
        ccy = policy_set.policy.currency.value
        now = utcnow()
        reservations = [_reservation(r) for r in rows if r["k"] == "R"]
        brokers = {r.symbol: r.broker for r in reservations if r.broker}
        positions = self._positions(
            [r for r in rows if r["k"] == "P"],
            policy_set,
            self.prices(rows, now),
            ccy,
            lambda symbol: brokers.get(symbol, self.default_broker),
        )
        state = AccountState.model_construct(
            now=now, instrument=None, reference_price=None, positions=positions, reservations=reservations
        )
        return account_exposure(state, None)

    async def _assemble(
        self,
        order: OrderRequest,
        policy_set: PolicySet,
        limits: Limits,
        rows: list[GatherRow],
        amend: bool,
        filled_qty: Decimal,
        unavailable: str | None,
    ) -> Gathered:
        inst = self.instruments.get(order.symbol)
        ccy = limits.currency
        now = utcnow()

        state, reason, scope = TradingState.ACTIVE, "", "GLOBAL"
        position_rows: list[GatherRow] = []
        reservations: list[ReservationView] = []
        quotes: list[StoredQuote] = []
        hold_row: GatherRow | None = None
        marks: GatherRow | None = None
        stored: dict[str, Any] | None = None
        seen: dict[str, int] | None = None
        counts = {"recent": 0, "open": 0}
        dup: str | None = None
        for row in rows:
            kind = row["k"]
            if kind == "R":
                reservations.append(_reservation(row))
            elif kind == "Q":
                quotes.append(_quote(row))
            elif kind == "H":
                hold_row = row
            elif kind == "P":
                position_rows.append(row)
            elif kind == "S":
                candidate = TradingState(row["side"])
                if _SEVERITY[candidate] > _SEVERITY[state]:
                    state, reason = candidate, row["broker"]
                    scope = row["symbol"] + (f" {row['order_id']}" if row["order_id"] else "")
            elif kind == "M":
                marks = row
            elif kind == "C":
                counts = {"recent": int(row["qty"]), "open": int(row["price"])}
            elif kind == "D":
                dup = row["order_id"]
            elif kind == "O":
                stored = {"request_hash": row["symbol"], "risk_decision": row["j"]}
            elif kind == "N":
                seen = {"account": int(row["qty"]), "client": int(row["price"])}

        # Every price of this decision comes from the quotes it read; every position is marked for the
        # order's broker (a real broker's account is never marked off the simulated feed).
        prices = QuoteReferenceData(self.market, quotes, now)
        positions = self._positions(position_rows, policy_set, prices, ccy, lambda _symbol: order.broker)

        # Equity marks: the day starts at the equity of the account's first check; the peak only rises.
        equity = account_equity(limits.account_capital, positions)
        start_equity = marks["qty"] if marks else equity
        peak_equity = max(marks["price"], equity) if marks else equity
        new_marks = None if marks is not None and peak_equity == marks["price"] else (start_equity, peak_equity)

        ref = prices.reference_price(order.symbol, order.broker)
        problem = (
            RiskReason(code=ref.code, message=ref.message or ref.code, field="symbol")
            if ref.value is None and ref.code
            else None
        )
        quote_rate: Decimal | None = D1
        if inst is not None:
            quote_rate = prices.fx_rate(inst.quote_currency, ccy, order.broker).value
        hold = _reservation(hold_row) if hold_row is not None else None
        caps = self.capabilities.get(order.broker)
        account_state = AccountState.model_construct(
            now=now,
            instrument=inst,
            reference_price=ref.value,
            reference_source=ref.source,
            reference_age_seconds=ref.age_seconds,
            reference_problem=problem,
            own_price_without_quote=prices.own_price_without_quote(order.symbol),
            quote_rate=quote_rate,
            trading_state=state,
            trading_state_reason=reason,
            trading_state_scope=scope,
            broker_order_types=caps.takes if caps else None,
            broker_time_in_force=caps.time_in_force if caps else None,
            broker_unavailable=unavailable,
            positions=positions,
            reservations=reservations,
            open_orders_of_client=counts["open"],
            recent_orders_of_client=counts["recent"],
            recent_orders_of_symbol=0,  # taken atomically with the decision (risk_take)
            recent_orders_global=0,
            duplicate_of=dup,
            day_start_equity=start_equity,
            day_peak_equity=peak_equity,
            is_amend=amend,
            open_qty=(order.qty - filled_qty) if amend else None,
            hold=hold if amend else None,
        )
        return Gathered(limits, account_state, policy_set, new_marks, hold_row, stored, seen)


def _duplicate_terms(order: OrderRequest) -> dict[str, Any]:
    """The ``orders`` columns two orders must share to be duplicates (``store.risk.same_terms_duplicate``)."""
    return {
        "symbol": order.symbol,
        "side": order.side.value,
        "qty": order.qty,
        "type": order.type.value,
        "price": order.price,
        "stop_price": order.stop_price,
        "trail_amount": order.trail_amount,
        "trail_percent": order.trail_percent,
        "activation_price": order.activation_price,
        "peg_type": None if order.peg_type is None else order.peg_type.value,
        "peg_offset": order.peg_offset,
    }


def _reservation(row: GatherRow) -> ReservationView:
    # Working orders come summed per symbol, side and broker (order_id empty); an amend's own order singly.
    return ReservationView.model_construct(
        order_id=row["order_id"] or "",
        symbol=row["symbol"],
        side=_SIDES[row["side"]],
        qty_open=row["qty"],
        price=row["price"],
        quote_rate=row["rate"],
        leverage=row["leverage"],
        broker=row["broker"] or "",
        notional=row["notional"],
    )


_SIDES = {s.value: s for s in OrderSide}


# ------------------------------------------------------------------------------------------------ deciding


class RiskActivities:
    """Pre-trade risk checks."""

    def __init__(
        self,
        *,
        pool: Pool,
        settings: Settings,
        instruments: InstrumentCatalog,
        capabilities: Mapping[str, BrokerCapabilities],
        market: MarketData | None = None,
        session_checks: Mapping[str, SessionCheck] | None = None,
        check: RiskCheck = basic_check,
        policy: PolicyStore | None = None,
    ) -> None:
        """Build the activities around a pool, the catalogue, the market data service and the check function.

        ``market`` defaults to the service of ``settings.market_data`` (every process reads the same quote store).
        """
        self._pool = pool
        self._check = check
        self.gatherer = RiskGatherer(
            settings=settings,
            instruments=instruments,
            market=market or MarketData(settings.market_data, instruments),
            capabilities=capabilities,
            session_checks=session_checks,
            policy=policy,
            pool=pool,
        )

    # -- the pure part ------------------------------------------------------------------------------

    def _evaluate(self, order: OrderRequest, g: Gathered) -> tuple[RiskDecision, tuple[Exposure, Exposure] | None]:
        """Run the check; never raises for any order (an arithmetic failure is a denial with a reason)."""
        limits, state = g.limits, g.state
        try:
            reasons = self._check(order, limits, state)
            price = valuation_price(order, state.reference_price, limits.price_band_pct)
            rate = state.quote_rate
            notional = None if price is None or rate is None else order.qty * price * rate
            legs = exposure_legs(order, limits, state) if not reasons else None
            if legs is None and not reasons:
                reasons = [RiskReason(code=ReasonCode.RISK_CHECK_FAILED, message=f"{order.summary()} cannot be valued")]
        except (ArithmeticError, ValueError) as e:
            reasons = [
                RiskReason(
                    code=ReasonCode.RISK_CHECK_FAILED,
                    message=f"the risk check could not compute this order ({type(e).__name__}); it is refused",
                )
            ]
            notional, legs = None, None
        return (
            RiskDecision(
                order_id=order.order_id,
                approved=not reasons,
                reasons=reasons,
                reference_price=state.reference_price,
                notional=notional,
                decided_at=state.now,
                request_hash=order.request_hash,
                submission_id=order.submission_id,
            ),
            legs,
        )

    # -- the counters that span accounts ----------------------------------------------------------

    def _counter_input(
        self, order: OrderRequest, g: Gathered, approved: bool, legs: tuple[Exposure, Exposure] | None, amend: bool
    ) -> dict[str, Any] | None:
        """``risk_take``'s input, or None when the decision touches no counter (an amend it refused)."""
        limits = g.limits
        if legs is None:
            if amend:
                return None
            # Refused before it could be valued: only velocity counts it; the account's totals stand.
            payload: dict[str, Any] = {"account": order.account, "approved": False, "exposure": []}
        else:
            without, with_ = legs
            # An order that truly reduces is never refused by a total (it is only recorded in them).
            check = not order_reduces(order, limits, g.state)
            exposure = [
                {
                    "scope": "FIRM",
                    "key": "",
                    "gross_with": str(with_.gross),
                    "gross_without": str(without.gross),
                    "notional_with": str(with_.open_notional),
                    "notional_without": str(without.open_notional),
                    "gross_limit": _str(limits.firm_max_gross_exposure) if check else None,
                    "notional_limit": _str(limits.firm_max_open_notional) if check else None,
                    "gross_code": ReasonCode.FIRM_MAX_GROSS_EXPOSURE,
                    "notional_code": ReasonCode.FIRM_MAX_OPEN_NOTIONAL,
                }
            ]
            for broker in sorted(set(with_.open_notional_by_broker) | set(without.open_notional_by_broker)):
                broker_limit = g.policy.broker_limits(broker).max_open_notional if broker and check else None
                exposure.append(
                    {
                        "scope": "BROKER",
                        "key": broker,
                        "notional_with": str(with_.open_notional_by_broker.get(broker, D0)),
                        "notional_without": str(without.open_notional_by_broker.get(broker, D0)),
                        "notional_limit": _str(broker_limit),
                        "notional_code": ReasonCode.BROKER_MAX_OPEN_NOTIONAL,
                    }
                )
            payload = {"account": order.account, "approved": approved, "exposure": exposure}
        if not amend:
            at_ms = int(order.received_at.timestamp() * 1000)
            payload["at_ms"] = at_ms
            payload["velocity"] = [
                {
                    "scope": "GLOBAL",
                    "key": "",
                    "window_ms": int(limits.velocity_global.window_seconds * 1000),
                    "max": limits.velocity_global.max_orders,
                    "code": ReasonCode.VELOCITY_GLOBAL,
                },
                {
                    "scope": "SYMBOL",
                    "key": order.symbol,
                    "window_ms": int(limits.velocity_per_symbol.window_seconds * 1000),
                    "max": limits.velocity_per_symbol.max_orders,
                    "code": ReasonCode.VELOCITY_SYMBOL,
                },
            ]
        return payload

    async def _careful_counters(
        self, conn: Conn, payload: dict[str, Any] | None, order: OrderRequest, limits: Limits
    ) -> list[RiskReason]:
        """After a breach: take the counters and wait for what they refuse (the slow path)."""
        if payload is None:
            return []
        return [_breach_reason(b, order, limits) for b in await risk_store.take(conn, payload, careful=True)]

    async def _decide_and_record(
        self,
        conn: Conn,
        order: OrderRequest,
        g: Gathered,
        *,
        careful: bool,
        amend: bool,
        actor: str,
        version: int | None = None,
    ) -> RiskDecision:
        """Decide, then send the counters, the order row, the reservation and the audit entry in one statement.

        On the fast path nothing here waits for Postgres: ``risk_record()`` goes out with the COMMIT, and a
        limit it finds breached aborts the transaction (the caller then decides again, carefully).
        """
        decision, legs = self._evaluate(order, g)
        counters = self._counter_input(order, g, decision.approved, legs, amend=amend)
        if careful:
            breaches = await self._careful_counters(conn, counters, order, g.limits)
            counters = None
            if breaches:
                decision = decision.model_copy(update={"approved": False, "reasons": [*decision.reasons, *breaches]})
        state, limits = g.state, g.limits
        record: dict[str, Any] = {
            "account": order.account,
            "client": order.client_id,
            "seen": g.seen,
            "counters": counters,
        }
        if g.marks is not None:
            record["marks"] = {
                "account": order.account,
                "day": state.now.date(),
                "start": g.marks[0],
                "peak": g.marks[1],
            }
        if not amend:
            # The order row, in the one shape both of its writers use (store/orders.py).
            record["order"] = received_row(order, decision)
        if decision.approved:
            price = valuation_price(order, state.reference_price, limits.price_band_pct) or D0
            record["reserve"] = {
                "amend": amend,
                "order_id": order.order_id,
                "account": order.account,
                "client_id": order.client_id,
                "symbol": order.symbol,
                "side": order.side.value,
                "qty": state.open_qty if state.open_qty is not None else order.qty,
                "price": price,
                "rate": state.quote_rate or D1,
                "leverage": limits.leverage,
                "broker": order.broker,
                "version": version,
            }
        if amend:
            action = "RISK_AMEND_APPROVED" if decision.approved else "RISK_AMEND_DENIED"
            detail: dict[str, Any] = {"order": order.summary(), "reasons": [r.model_dump() for r in decision.reasons]}
        else:
            action = "RISK_APPROVED" if decision.approved else "RISK_DENIED"
            detail = {
                "order": order.summary(),
                "client": f"{order.client_id}/{order.client_order_id}",
                "account": order.account,
                "reasons": [r.model_dump() for r in decision.reasons],
                "reference_price": str(decision.reference_price),
                "reference": _reference_note(state),
                "notional": str(decision.notional),
                "trading_state": f"{state.trading_state.value} ({state.trading_state_scope})",
                "policy_version": g.policy.version,
            }
        record["audit"] = audit_entry(actor=actor, action=action, subject=order.order_id, detail=detail)
        await risk_store.record(conn, record)
        group = linked_group(order)
        if decision.approved and group is not None:
            await risk_store.mark_linked_group(conn, order_id=order.order_id, group=group)
        if decision.approved and not amend and order.list_exits and state.quote_rate is not None:
            held = list_exit_notional(order, state.reference_price, state.quote_rate)
            await risk_store.hold_list_exits(
                conn, order_id=order.order_id, notional=held, margin=held / limits.leverage
            )
        return decision

    # -- the activities -----------------------------------------------------------------------------

    async def _reference_quote(self, request: TrailQuoteRequest) -> tuple[str, Quote | None, str | None]:
        """The source risk prices ``request``'s symbol from, its quote if fresh, else why not (same staleness rule)."""
        market = self.gatherer.market
        source = market.source_for(request.symbol, request.broker)
        async with self._pool.connection() as conn:
            quotes = await fetch_quotes(conn, symbol=request.symbol, source=source)
        reference = PriceBook(market, request.broker, quotes, utcnow()).reference(request.symbol)
        problem = reference.problem()
        if problem is not None or reference.view is None:
            return source, None, problem or f"no quote for {request.symbol}"
        return source, reference.view.quote, None

    @activity.defn(name="trail_quote")
    async def trail_quote(self, request: TrailQuoteRequest) -> TrailQuote:
        """The quote an emulated trailing stop is checked against (the risk check's source, same staleness rule)."""
        source, quote, problem = await self._reference_quote(request)
        if quote is None:
            return TrailQuote(source=source, problem=problem)
        side = quote.bid if request.side is OrderSide.SELL else quote.ask
        return TrailQuote(source=source, price=side or quote.last or quote.mid, at=quote.at)

    @activity.defn(name="leg_quote")
    async def leg_quote(self, request: TrailQuoteRequest) -> TriggerQuote:
        """The quote an order list's leg held on quotes is checked against (the risk check's source and staleness)."""
        source, quote, problem = await self._reference_quote(request)
        if quote is None:
            return TriggerQuote(source=source, problem=problem)
        return TriggerQuote(source=source, bid=quote.bid, ask=quote.ask, last=quote.last, at=quote.at)

    @activity.defn(name="check_order")
    async def check_order(self, order: OrderRequest) -> RiskDecision:
        """Decide on a new order; record the order row, the decision, the reservation and an audit entry."""
        started = time.perf_counter()
        async with self._pool.connection() as conn:
            decision = await self._optimistic(
                conn, order.account, lambda careful: self._check_order(conn, order, careful=careful)
            )
        ORDER_LATENCY.labels(stage="risk").observe(time.perf_counter() - started)
        return decision

    async def _optimistic(
        self, conn: Conn, account: str, attempt: Callable[[bool], Awaitable[RiskDecision]]
    ) -> RiskDecision:
        """Decide without holding anything between the gather and the record; carefully after a breach.

        The fast path is two statements, each its own transaction: ``risk_gather`` and ``risk_record``. If
        another decision of the account or client was recorded in between, the decision is made again. If a
        total across accounts would be breached, the other accounts' stale parts of the totals are recomputed
        first (their orders filled or ended since their last decision), then the decision is made again inside
        one transaction that holds the account's locks and waits for the counters' answer, so the refusal
        says which limit.
        """
        for _ in range(_OPTIMISTIC_ATTEMPTS):
            try:
                return await attempt(False)
            except psycopg.errors.RaiseException as e:
                if _RETRY in str(e):
                    continue
                if _LIMIT_BREACH not in str(e):
                    raise
                if _TOTALS & _breach_codes(e):
                    await self._refresh_stale(conn, except_account=account)
                break
        return await attempt(True)

    async def _refresh_stale(self, conn: Conn, *, except_account: str) -> int:
        """Recompute other accounts' parts of the totals where their orders changed since; return how many.

        Each account under its own lock, taken only if free (an account deciding right now refreshes itself).
        """
        refreshed = 0
        for account in await risk_store.stale_accounts(conn, except_account=except_account, limit=_REFRESH_ACCOUNTS):
            async with conn.transaction():
                if not await risk_store.try_lock_account(conn, account):
                    continue
                exposure = self.gatherer.exposure_of(account, await self.gatherer.account_rows(conn, account))
                parts = [
                    {"scope": "FIRM", "key": "", "gross": str(exposure.gross), "notional": str(exposure.open_notional)}
                ] + [
                    {"scope": "BROKER", "key": broker, "gross": "0", "notional": str(notional)}
                    for broker, notional in exposure.open_notional_by_broker.items()
                ]
                await risk_store.refresh(conn, account, parts)
                refreshed += 1
        return refreshed

    async def _check_order(self, conn: Conn, order: OrderRequest, *, careful: bool) -> RiskDecision:
        try:
            async with conn.transaction() if careful else contextlib.nullcontext():
                g = await self.gatherer.gather_all(conn, order)
                if g.stored is not None:
                    return await self._stored(conn, order, g.stored)
                return await self._decide_and_record(
                    conn, order, g, careful=careful, amend=False, actor=order.submitted_by
                )
        except psycopg.errors.RaiseException as e:
            if _CLOSED not in str(e):
                raise
            return await self._closed(conn, order, e)

    async def _closed(self, conn: Conn, order: OrderRequest, error: psycopg.errors.RaiseException) -> RiskDecision:
        """The order's row was booked by its workflow before this decision could be recorded: a refusal.

        A slow attempt that the workflow's bounded retries gave up on (the order is DENIED meanwhile), or a row
        of other terms: nothing was recorded or reserved, and the decision says so.
        """
        try:
            row = json.loads(error.diag.message_detail or "{}")
        except ValueError:
            row = {}
        stored_hash = row.get("request_hash") or order.request_hash
        if stored_hash != order.request_hash:
            message = (
                f"order {order.order_id} was already recorded for different terms under this idempotency key; "
                "no decision is recorded for these"
            )
        else:
            message = (
                f"order {order.order_id} was closed ({row.get('status', 'booked')}) before this risk check could "
                "be recorded; nothing was recorded or reserved for it"
            )
        log.warning("risk check of %s not recorded: %s", order.order_id, message)
        reason = RiskReason(code=ReasonCode.IDEMPOTENCY_CONFLICT, message=message)
        await queue_audit(
            conn,
            actor=order.submitted_by,
            action="RISK_DENIED",
            subject=order.order_id,
            detail={"order": order.summary(), "reasons": [reason.model_dump()]},
        )
        return RiskDecision(
            order_id=order.order_id,
            approved=False,
            reasons=[reason],
            decided_at=utcnow(),
            request_hash=stored_hash,
            submission_id=order.submission_id,
        )

    async def _stored(self, conn: Conn, order: OrderRequest, stored: dict[str, Any]) -> RiskDecision:
        """A retry: the stored decision if it was made for this request, else a refusal that takes nothing."""
        decision = RiskDecision.model_validate(stored["risk_decision"])
        if stored["request_hash"] == order.request_hash and decision.request_hash in ("", order.request_hash):
            return decision
        conflict = RiskDecision(
            order_id=order.order_id,
            approved=False,
            reasons=[
                RiskReason(
                    code=ReasonCode.IDEMPOTENCY_CONFLICT,
                    message=f"order {order.order_id} was already decided for different terms under this "
                    "idempotency key; that decision is not reused for these",
                )
            ],
            decided_at=utcnow(),
            # The stored order's hash: the caller sees a different body under a used key (409).
            request_hash=stored["request_hash"],
            submission_id=order.submission_id,
        )
        await queue_audit(
            conn,
            actor=order.submitted_by,
            action="RISK_DENIED",
            subject=order.order_id,
            detail={"order": order.summary(), "reasons": [r.model_dump() for r in conflict.reasons]},
        )
        return conflict

    @activity.defn(name="check_amend")
    async def check_amend(self, request: AmendCheck) -> RiskDecision:
        """Decide on an order's new terms; if approved, its reservation holds the larger of old and new.

        The hold is stamped with ``request.version``: only the booking of a newer state of the order (the
        amend's own events, the broker's answer) sets the reservation back to the order's terms.
        """
        async with self._pool.connection() as conn:
            return await self._optimistic(
                conn, request.order.account, lambda careful: self._check_amend(conn, request, careful=careful)
            )

    async def _check_amend(self, conn: Conn, request: AmendCheck, *, careful: bool) -> RiskDecision:
        order = request.order
        async with conn.transaction() if careful else contextlib.nullcontext():
            g = await self.gatherer.gather_all(conn, order, amend=True, filled_qty=request.filled_qty)
            return await self._decide_and_record(
                conn, order, g, careful=careful, amend=True, actor=request.requested_by, version=request.version
            )


def _reference_note(state: AccountState) -> str:
    """Where the reference price came from, for the audit entry: the source and its quote's age."""
    if state.reference_source is None:
        return "none"
    if state.reference_age_seconds is None:
        return f"{state.reference_source}: no quote"
    stale = state.reference_problem is not None and state.reference_problem.code == ReasonCode.STALE_REFERENCE_PRICE
    return f"{state.reference_source} quote {state.reference_age_seconds:.1f}s old" + (" (stale)" if stale else "")


def _breach_codes(error: psycopg.errors.RaiseException) -> set[str]:
    try:
        return {b["code"] for b in json.loads(error.diag.message_detail or "[]")}
    except (ValueError, TypeError, KeyError):
        return set()


def _str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _breach_reason(breach: dict[str, Any], order: OrderRequest, limits: Limits) -> RiskReason:
    """A reason for a limit ``risk_take`` found breached."""
    code, ccy = breach["code"], limits.currency
    if code in (ReasonCode.VELOCITY_GLOBAL, ReasonCode.VELOCITY_SYMBOL):
        velocity = limits.velocity_global if code == ReasonCode.VELOCITY_GLOBAL else limits.velocity_per_symbol
        scope = "all clients" if code == ReasonCode.VELOCITY_GLOBAL else f"symbol {order.symbol}"
        return RiskReason(code=code, message=velocity_message(int(breach["count"]), scope, velocity))
    total, others, limit = (Decimal(str(breach[k])) for k in ("total", "others", "limit"))
    what = {
        ReasonCode.FIRM_MAX_GROSS_EXPOSURE: "firm-wide gross exposure (every account, worst case per side)",
        ReasonCode.FIRM_MAX_OPEN_NOTIONAL: "firm-wide notional of working orders (every account)",
        ReasonCode.BROKER_MAX_OPEN_NOTIONAL: f"notional of working orders at broker {breach.get('key')}",
    }.get(code, code)
    return RiskReason(
        code=code,
        message=f"{what} would be {total:,.2f} {ccy} ({others:,.2f} without account {order.account}); "
        f"the limit is {limit:,.2f} {ccy}",
        field="qty",
    )
