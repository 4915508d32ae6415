"""End-of-day reconciliation: what a broker says against what the ledger and the order read model hold.

A run (``workflows/reconciliation.py``) takes a ``BrokerStatement`` on the broker's task queue (its positions,
its fills of one UTC day, its open orders) and a ``LedgerView`` from Postgres, and ``compare`` turns every
difference into a ``Difference`` of one kind:

=========================  ==========================================================================
kind                       meaning
=========================  ==========================================================================
``POSITION_DRIFT``         the broker's position in an account and symbol differs from the sum of the
                           ledger's fills at that broker, beyond what this day's fill differences explain
                           (accounts as the broker keeps them: ``_Groups``)
``FILL_MISSING_IN_LEDGER`` the broker reports a fill of the day the ledger has not booked
``FILL_UNKNOWN_TO_BROKER`` the ledger booked a fill of the day the broker does not report
``ORPHAN_ORDER_AT_BROKER`` the broker works an order Exodus does not know, or knows as finished
``ORDER_NOT_AT_BROKER``    Exodus has an order open at the broker that the broker does not work
=========================  ==========================================================================

Each difference has a ``ref`` (its natural key: ``account/symbol``, the exec id, the cl_ord_id) and a detail that
does not change while the difference stays the same, so a second run of the day finds the same differences and
opens no new break. Anything younger than the grace period before the statement was taken (an order just sent,
a fill not booked yet) is left for the next run. A broker that cannot report positions or fills (its
capabilities say so) is compared on the rest; the report says what was compared.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from core.domain import (
    BreakKind,
    ExecutionReport,
    OrderSide,
    OrderStatus,
    OrderStatusReport,
    PositionReport,
    base_order_id,
)

__all__ = [
    "LIVE_STATUSES",
    "BrokerStatement",
    "Difference",
    "LedgerFill",
    "LedgerOrder",
    "LedgerView",
    "ReconciliationKind",
    "compare",
    "day_bounds",
    "workflow_id_for_day",
]


class ReconciliationKind(StrEnum):
    """What an end-of-day difference is about: the ``BreakKind`` of its break (those five of them)."""

    POSITION_DRIFT = BreakKind.POSITION_DRIFT.value
    FILL_MISSING_IN_LEDGER = BreakKind.FILL_MISSING_IN_LEDGER.value
    FILL_UNKNOWN_TO_BROKER = BreakKind.FILL_UNKNOWN_TO_BROKER.value
    ORPHAN_ORDER_AT_BROKER = BreakKind.ORPHAN_ORDER_AT_BROKER.value
    ORDER_NOT_AT_BROKER = BreakKind.ORDER_NOT_AT_BROKER.value

    @property
    def break_kind(self) -> BreakKind:
        """The typed kind of the break it opens."""
        return BreakKind(self.value)


#: Read-model statuses in which an order should be working at its broker.
LIVE_STATUSES: Final = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.ACCEPTED,
        OrderStatus.TRIGGERED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_UPDATE,
        OrderStatus.PENDING_CANCEL,
    }
)

_Frozen = ConfigDict(frozen=True)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[start, end)`` of a UTC day."""
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def workflow_id_for_day(broker: str, day: date) -> str:
    """The on-demand run's workflow id: one per broker and day (``POST /api/v1/reconciliations`` is idempotent)."""
    return f"reconcile-{broker}-{day.isoformat()}"


class BrokerStatement(BaseModel):
    """What the broker says at ``taken_at``: positions and fills of ``day`` (None: it cannot say), open orders."""

    model_config = _Frozen

    broker: str
    day: date
    taken_at: datetime
    positions: list[PositionReport] | None = None
    fills: list[ExecutionReport] | None = None
    open_orders: list[OrderStatusReport] = []
    #: The broker has one account per connection (``BrokerCapabilities.one_account``: Alpaca, OANDA, Kraken): its
    #: positions are the whole connection's, compared with the sum over every Exodus account routed to it.
    one_account: bool = False


class LedgerFill(BaseModel):
    """A fill the ledger booked."""

    model_config = _Frozen

    exec_id: str
    order_id: str
    account: str
    symbol: str
    side: OrderSide
    qty: Decimal
    price: Decimal
    filled_at: datetime


class LedgerOrder(BaseModel):
    """An order of the read model (its broker's view is compared by order id)."""

    model_config = _Frozen

    order_id: str
    account: str
    symbol: str
    status: OrderStatus
    updated_at: datetime


class LedgerView(BaseModel):
    """What Exodus holds for one broker: positions from its fills, the day's fills, orders open or asked about."""

    model_config = _Frozen

    #: Signed position per ``account/symbol`` now (the sum of every fill booked at the broker).
    positions: dict[str, Decimal] = {}
    #: Fills booked at the broker during the day.
    fills: list[LedgerFill] = []
    #: Orders of the broker that should be working there (``LIVE_STATUSES``).
    open_orders: list[LedgerOrder] = []
    #: The read model's rows of the orders the broker's open orders and missing fills name (whatever status).
    known: dict[str, LedgerOrder] = {}
    #: Exodus account -> the broker's own account id, from the accounts registry (``broker_account``): positions
    #: the broker reports under that id are compared with the sum of the Exodus accounts registered to it.
    broker_accounts: dict[str, str] = {}


class Difference(BaseModel):
    """One difference: its kind, natural key, the order it is about (if any) and a stable description."""

    model_config = _Frozen

    kind: ReconciliationKind
    ref: str
    detail: str
    order_id: str | None = None
    account: str | None = None
    symbol: str | None = None


def _signed(side: OrderSide, qty: Decimal) -> Decimal:
    return qty if side is OrderSide.BUY else -qty


def _num(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _position_key(account: str, symbol: str) -> str:
    return f"{account}/{symbol}"


def compare(statement: BrokerStatement, ledger: LedgerView, *, grace: timedelta) -> list[Difference]:
    """Every difference between the broker's statement and the ledger, in a stable order."""
    cutoff = statement.taken_at - grace
    out: list[Difference] = []
    # What this day's fill differences explain of the positions: the broker's fills the ledger lacks add to the
    # ledger's side, the ledger's fills the broker lacks come off it (each is its own break, not a drift too).
    explained: dict[str, Decimal] = {}

    if statement.fills is not None:
        booked = {f.exec_id: f for f in ledger.fills}
        reported = {f.exec_id: f for f in statement.fills}
        for exec_id in sorted(reported):
            f = reported[exec_id]
            if exec_id in booked or f.transact_at > cutoff:
                continue
            order_id = base_order_id(f.cl_ord_id)
            order = ledger.known.get(order_id)
            account = order.account if order is not None else None
            if account is not None:
                key = _position_key(account, f.symbol)
                explained[key] = explained.get(key, Decimal(0)) + _signed(f.side, f.last_qty)
            out.append(
                Difference(
                    kind=ReconciliationKind.FILL_MISSING_IN_LEDGER,
                    ref=exec_id,
                    order_id=order_id if order is not None else None,
                    account=account,
                    symbol=f.symbol,
                    detail=(
                        f"the broker reports fill {exec_id} of {f.cl_ord_id} ({f.side.value} {_num(f.last_qty)}"
                        f" {f.symbol} at {_num(f.last_price or Decimal(0))}) that the ledger has not booked"
                        + ("" if order is not None else "; Exodus knows no such order")
                    ),
                )
            )
        for exec_id in sorted(booked):
            b = booked[exec_id]
            if exec_id in reported or b.filled_at > cutoff:
                continue
            key = _position_key(b.account, b.symbol)
            explained[key] = explained.get(key, Decimal(0)) - _signed(b.side, b.qty)
            out.append(
                Difference(
                    kind=ReconciliationKind.FILL_UNKNOWN_TO_BROKER,
                    ref=exec_id,
                    order_id=b.order_id,
                    account=b.account,
                    symbol=b.symbol,
                    detail=(
                        f"the ledger booked fill {exec_id} of order {b.order_id} ({b.side.value} {_num(b.qty)}"
                        f" {b.symbol} at {_num(b.price)}) that the broker does not report"
                    ),
                )
            )

    if statement.positions is not None:
        out.extend(_position_drifts(statement, ledger, explained))

    working = {base_order_id(o.cl_ord_id): o for o in statement.open_orders}
    for order_id in sorted(working):
        o = working[order_id]
        mine = ledger.known.get(order_id)
        if mine is not None and (mine.status in LIVE_STATUSES or mine.updated_at > cutoff):
            continue
        why = "Exodus knows no such order" if mine is None else f"Exodus has it {mine.status.value}"
        out.append(
            Difference(
                kind=ReconciliationKind.ORPHAN_ORDER_AT_BROKER,
                ref=o.cl_ord_id,
                order_id=order_id if mine is not None else None,
                account=mine.account if mine is not None else None,
                detail=(
                    f"the broker works order {o.cl_ord_id} ({o.status.value}, {_num(o.cum_qty)} of"
                    f" {_num(o.qty)} filled) and {why}"
                ),
            )
        )
    for mine in sorted(ledger.open_orders, key=lambda m: m.order_id):
        if mine.order_id in working or mine.updated_at > cutoff:
            continue
        out.append(
            Difference(
                kind=ReconciliationKind.ORDER_NOT_AT_BROKER,
                ref=mine.order_id,
                order_id=mine.order_id,
                account=mine.account,
                symbol=mine.symbol,
                detail=f"order {mine.order_id} is {mine.status.value} in Exodus but the broker does not work it",
            )
        )
    return out


class _Groups:
    """Which positions the broker and the ledger keep together: the broker's accounts, as Exodus knows them.

    A broker with one account per connection (``statement.one_account``) keeps one group, the whole connection.
    Otherwise an Exodus account registered with a ``broker_account`` belongs to that broker account's group (several
    Exodus accounts may share one), and any other account is a group of its own; a position the broker reports under
    a registered broker account joins that group, and one under an Exodus account's name joins that account's group.
    """

    def __init__(self, statement: BrokerStatement, ledger: LedgerView) -> None:
        self._broker = statement.broker
        self._whole = statement.one_account
        self._registry = dict(ledger.broker_accounts)
        self._broker_ids = set(self._registry.values())
        self._reported = sorted({p.account for p in statement.positions or []})

    def of_ledger(self, account: str) -> str:
        """The group of an Exodus account."""
        return "" if self._whole else self._registry.get(account, account)

    def of_broker(self, account: str) -> str:
        """The group of an account the broker reports."""
        if self._whole:
            return ""
        return account if account in self._broker_ids else self._registry.get(account, account)

    def label(self, group: str, members: set[str]) -> tuple[str, str | None]:
        """The name a difference of ``group`` is keyed by (stable from run to run) and its Exodus account if one.

        A group of one Exodus account is named by it; a whole connection by the broker (its account as the adapter
        reports it); a broker account shared by several Exodus accounts by the broker's id.
        """
        if self._whole:
            account = self._reported[0] if len(self._reported) == 1 else (min(members) if len(members) == 1 else None)
            return self._broker, account
        registered = {a for a, b in self._registry.items() if b == group}
        named = registered if group in self._broker_ids else {group}
        if len(named) == 1:
            only = next(iter(named))
            return only, only
        return group, None


def _position_drifts(statement: BrokerStatement, ledger: LedgerView, explained: dict[str, Decimal]) -> list[Difference]:
    """A drift per group and symbol where the broker's position differs from the ledger's plus what fills explain."""
    groups = _Groups(statement, ledger)
    theirs: dict[tuple[str, str], Decimal] = {}
    for p in statement.positions or []:
        k = (groups.of_broker(p.account), p.symbol)
        theirs[k] = theirs.get(k, Decimal(0)) + p.qty
    ours: dict[tuple[str, str], dict[str, Decimal]] = {}
    extra: dict[tuple[str, str], Decimal] = {}
    for key, qty in ledger.positions.items():
        account, _, symbol = key.partition("/")
        by_account = ours.setdefault((groups.of_ledger(account), symbol), {})
        by_account[account] = by_account.get(account, Decimal(0)) + qty
    for key, qty in explained.items():
        account, _, symbol = key.partition("/")
        k = (groups.of_ledger(account), symbol)
        extra[k] = extra.get(k, Decimal(0)) + qty
    out = []
    for k in sorted(set(theirs) | set(ours)):
        group, symbol = k
        by_account = ours.get(k, {})
        broker_qty = theirs.get(k, Decimal(0))
        ledger_qty = sum(by_account.values(), Decimal(0))
        if broker_qty == ledger_qty + extra.get(k, Decimal(0)):
            continue
        name, holder = groups.label(group, set(by_account))
        key = _position_key(name, symbol)
        split = (
            " (" + ", ".join(f"{a} {_num(q)}" for a, q in sorted(by_account.items())) + ")"
            if len(by_account) > 1 or (by_account and name not in by_account)
            else ""
        )
        out.append(
            Difference(
                kind=ReconciliationKind.POSITION_DRIFT,
                ref=key,
                account=holder,
                symbol=symbol,
                detail=(
                    f"{key}: the broker holds {_num(broker_qty)}, the ledger {_num(ledger_qty)}{split}"
                    + (f" ({_num(extra[k])} explained by this day's fill differences)" if extra.get(k) else "")
                ),
            )
        )
    return out
