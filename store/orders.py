"""``orders``: the read model, one row per order, kept current by the workflow's bookings.

**One writer, one row shape.** ``OrderRow`` has every column of the table (``tests/store/test_orders.py``
compares them). The two writers build it in Python, the risk decision with ``received_row`` and the booking
with ``OrderSnapshot.row`` (``activities/persistence.py``), and hand it to the one SQL function that inserts
into ``orders``, ``order_write(row, booking)`` (migration 0018): the decision through ``risk_record`` (in its
statement), the booking through ``write_order``. The function's column list is the table's own row type, so
there is no second list to keep in step, and mypy makes every builder fill every column. The order's terms are
one column each, under their names in ``core.domain.OrderTerms`` (``TermsColumns``, built by ``terms_columns``
for both writers; ``tests/store/test_orders.py`` checks the names against ``TERMS``).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, TypedDict, cast

from psycopg import AsyncCursor
from psycopg.rows import DictRow

from core.auth import Scope
from core.domain import OrderRequest, OrderStatus, OrderTerms, RiskDecision, workflow_id_for
from store import Conn
from store._pending import Pending
from store._where import clause, scope_conditions
from store.text import jsonb

__all__ = [
    "ORDER_COLUMNS",
    "RECORDED_SQL",
    "OrderOwner",
    "OrderRecord",
    "OrderDetail",
    "OrderRow",
    "OrderView",
    "SWEPT_STATUSES",
    "TermsColumns",
    "WorkingOrder",
    "get_order",
    "list_orders",
    "lock_order",
    "send_lock_order",
    "order_ids",
    "received_row",
    "recorded",
    "terms_columns",
    "working_orders",
    "write_order",
]


class TermsColumns(TypedDict):
    """An order's terms as ``orders`` holds them: a column a term of ``core.domain.OrderTerms``, by its name."""

    account: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal | None
    stop_price: Decimal | None
    peg_type: str | None
    peg_offset: Decimal | None
    expire_at: datetime | None
    trail_amount: Decimal | None
    trail_percent: Decimal | None
    activation_price: Decimal | None


class OrderView(TermsColumns):
    """The columns the API shows of an order: its terms, its ids and its progress."""

    order_id: str
    #: The client's own id for the order (``"ord-1"``), not the id Exodus sends to the broker (``cl_ord_id``).
    client_order_id: str
    client_id: str
    broker: str
    broker_order_id: str | None
    status: str
    filled_qty: Decimal
    avg_price: Decimal | None
    reason: str | None
    flags: list[str]
    created_at: datetime
    updated_at: datetime
    workflow_id: str


class OrderRow(OrderView):
    """Every column of ``orders`` (the one shape both writers send to ``order_write()``)."""

    idempotency_key: str
    request_hash: str
    #: The risk decision as JSON (``RiskDecision.model_dump(mode="json")``): the answer to the order's key.
    risk_decision: dict[str, Any] | None
    #: The order's event count as of this row; a booking never moves it backwards.
    version: int
    reduce_only: bool


#: The columns of ``OrderRow``.
ORDER_COLUMNS: tuple[str, ...] = tuple(OrderRow.__annotations__)


def terms_columns(terms: OrderTerms) -> TermsColumns:
    """``terms`` as the columns that hold them (the enums as their values)."""
    return {
        "account": terms.account,
        "symbol": terms.symbol,
        "side": terms.side.value,
        "type": terms.type.value,
        "time_in_force": terms.time_in_force.value,
        "qty": terms.qty,
        "price": terms.price,
        "stop_price": terms.stop_price,
        "peg_type": None if terms.peg_type is None else terms.peg_type.value,
        "peg_offset": terms.peg_offset,
        "expire_at": terms.expire_at,
        "trail_amount": terms.trail_amount,
        "trail_percent": terms.trail_percent,
        "activation_price": terms.activation_price,
    }


_VIEW_COLUMNS = ", ".join(OrderView.__annotations__)


class OrderRecord(TypedDict):
    """What answers a repeated key: whose the row is, its decision and status, and its scope."""

    request_hash: str
    risk_decision: dict[str, Any] | None
    status: str
    client_id: str
    account: str
    broker: str


class OrderOwner(TypedDict):
    """Whose an order row is (its request hash) and its status."""

    request_hash: str
    status: str


def received_row(order: OrderRequest, decision: RiskDecision) -> OrderRow:
    """The row the risk decision writes for a new order: its terms, RECEIVED, with the decision."""
    return {
        **terms_columns(order),
        "order_id": order.order_id,
        "workflow_id": workflow_id_for(order.order_id),
        "idempotency_key": order.idempotency_key,
        "request_hash": order.request_hash,
        "client_id": order.client_id,
        "client_order_id": order.client_order_id,
        "broker": order.broker,
        "broker_order_id": None,
        "status": OrderStatus.RECEIVED.value,
        "filled_qty": Decimal(0),
        "avg_price": None,
        "reason": "; ".join(r.message for r in decision.reasons) or None,
        "flags": [],
        "risk_decision": decision.model_dump(mode="json"),
        "version": 0,
        "created_at": order.received_at,
        "updated_at": order.received_at,
        "reduce_only": order.reduce_only,
    }


async def write_order(conn: Conn, row: OrderRow, *, booking: bool) -> None:
    """Insert or update an order's row through ``order_write()`` (the one writer; see the module docstring).

    ``booking``: the workflow's booking (moves the row forward, for its own terms only); else the decision's
    write (sets the decision of a row that has none). The risk decision's write goes in ``risk_record``'s
    statement (``store.risk.record``), not through here.
    """
    await conn.execute("SELECT order_write(%s, %s)", (jsonb(row), booking))


async def lock_order(conn: Conn, order_id: str) -> OrderOwner | None:
    """Lock an order's row for the transaction (bookings of one order never interleave); None if none yet."""
    return await (await send_lock_order(conn, order_id)).result()


async def send_lock_order(conn: Conn, order_id: str) -> Pending[OrderOwner | None]:
    """``lock_order``, its answer read later (pipeline mode: with the answers of what is sent after it)."""
    cur = await conn.execute("SELECT request_hash, status FROM orders WHERE order_id = %s FOR UPDATE", (order_id,))
    return Pending(cur, _owner, None)


async def _owner(cur: AsyncCursor[DictRow]) -> OrderOwner | None:
    return cast(OrderOwner | None, await cur.fetchone())


#: ``recorded``'s statement (``store.auth.get_account_and_order`` sends it in the same round trip as the account's).
RECORDED_SQL = "SELECT request_hash, risk_decision, status, client_id, account, broker FROM orders WHERE order_id = %s"


async def recorded(conn: Conn, order_id: str) -> OrderRecord | None:
    """An order's owner, decision, status and scope, else None."""
    cur = await conn.execute(RECORDED_SQL, (order_id,))
    return cast(OrderRecord | None, await cur.fetchone())


class OrderDetail(OrderView):
    """One order as the API shows it alone: its view and the risk decision it was taken under."""

    #: ``RiskDecision`` as JSON; None until the decision is recorded.
    risk_decision: dict[str, Any] | None


async def get_order(conn: Conn, order_id: str) -> OrderDetail | None:
    """One order as the API shows it, with its risk decision, else None."""
    cur = await conn.execute(f"SELECT {_VIEW_COLUMNS}, risk_decision FROM orders WHERE order_id = %s", (order_id,))
    return cast(OrderDetail | None, await cur.fetchone())


async def list_orders(
    conn: Conn,
    *,
    scope: Scope,
    statuses: list[str] | None = None,
    symbol: str | None = None,
    client_id: str | None = None,
    client_order_id: str | None = None,
    account: str | None = None,
    broker: str | None = None,
    limit: int,
    offset: int = 0,
) -> tuple[int, list[OrderView]]:
    """Orders inside ``scope`` matching every filter given, newest first: (how many match, this page)."""
    where, params = scope_conditions(scope, clients="client_id", accounts="account", brokers="broker")
    if statuses:
        where.append("status = ANY(%s)")
        params.append(statuses)
    for column, value in (
        ("symbol", symbol),
        ("client_id", client_id),
        ("client_order_id", client_order_id),
        ("account", account),
        ("broker", broker),
    ):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    cur = await conn.execute(f"SELECT count(*) AS n FROM orders {clause(where)}", params)
    counted = await cur.fetchone()
    total = int(counted["n"]) if counted else 0
    cur = await conn.execute(
        f"SELECT {_VIEW_COLUMNS} FROM orders {clause(where)} ORDER BY created_at DESC, order_id LIMIT %s OFFSET %s",
        [*params, limit, offset],
    )
    return total, cast(list[OrderView], await cur.fetchall())


async def order_ids(
    conn: Conn,
    *,
    scope: Scope,
    statuses: list[str],
    account: str | None = None,
    client_id: str | None = None,
    symbol: str | None = None,
    broker: str | None = None,
) -> list[str]:
    """Ids of the orders inside ``scope`` in one of ``statuses`` (and of the account, client, symbol, broker)."""
    where, params = scope_conditions(scope, clients="client_id", accounts="account", brokers="broker")
    where.insert(0, "status = ANY(%s)")
    params.insert(0, statuses)
    for column, value in (("account", account), ("client_id", client_id), ("symbol", symbol), ("broker", broker)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    cur = await conn.execute(f"SELECT order_id FROM orders {clause(where)}", params)
    return [str(r["order_id"]) for r in await cur.fetchall()]


class WorkingOrder(TypedDict):
    """A working order as booked: what a broker sweep compares with the broker's open orders."""

    order_id: str
    status: str
    filled_qty: Decimal


#: The statuses a broker sweep compares (a pending cancel or replace keeps its own prompt lookup).
SWEPT_STATUSES = (OrderStatus.ACCEPTED.value, OrderStatus.TRIGGERED.value, OrderStatus.PARTIALLY_FILLED.value)


async def working_orders(conn: Conn, broker: str, *, order_ids: list[str] | None = None) -> list[WorkingOrder]:
    """The orders of ``broker`` booked as working (``SWEPT_STATUSES``), or only those of ``order_ids``."""
    # The statuses as literals: the partial index of migration 0034 serves the query only so.
    statuses = ", ".join(f"'{s}'" for s in SWEPT_STATUSES)
    sql = f"SELECT order_id, status, filled_qty FROM orders WHERE broker = %s AND status IN ({statuses})"
    params: list[Any] = [broker]
    if order_ids is not None:
        sql += " AND order_id = ANY(%s)"
        params.append(order_ids)
    cur = await conn.execute(sql, params)
    return cast(list[WorkingOrder], await cur.fetchall())
