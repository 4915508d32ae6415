"""The archive's reads: orders, fills, risk decisions, operator actions and audit rows of a period, a page at a time.

Each kind is read in pages by its own key (``after`` is the last row's key), so an export of years never holds
more than one page, and never holds one transaction open for the whole export. Periods are ``[start, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from store import Conn

__all__ = ["EXPORT_KINDS", "OPERATOR_ACTIONS", "RISK_ACTIONS", "ExportKind", "columns", "export_page", "key_of"]

ExportKind = Literal["audit", "risk", "operator", "orders", "fills"]
EXPORT_KINDS: tuple[ExportKind, ...] = ("audit", "risk", "operator", "orders", "fills")

#: The audit actions that are risk decisions (activities/risk.py).
RISK_ACTIONS = ("RISK_APPROVED", "RISK_DENIED", "RISK_AMEND_APPROVED", "RISK_AMEND_DENIED")
#: Audit actions taken by people (operators, risk, admins, desks acting on their orders), as LIKE patterns.
OPERATOR_ACTIONS = (
    "CANCEL\\_%",
    "AMEND\\_%",
    "TRADING\\_STATE\\_%",
    "RISK\\_POLICY\\_%",
    "API\\_KEY\\_%",
    "ACCOUNT\\_%",
    "BREAK\\_%",
    "RECONCILIATION\\_%",
)

_AUDIT_COLUMNS = ("id", "at", "actor", "action", "subject", "detail", "prev_hash", "hash")


@dataclass(frozen=True)
class _Kind:
    table: str
    columns: tuple[str, ...]
    time: str
    key: tuple[str, ...]
    where: str = ""


_KINDS: dict[ExportKind, _Kind] = {
    "audit": _Kind("audit_log", _AUDIT_COLUMNS, "at", ("id",)),
    "risk": _Kind("audit_log", _AUDIT_COLUMNS, "at", ("id",), "action = ANY(%(risk)s)"),
    "operator": _Kind("audit_log", _AUDIT_COLUMNS, "at", ("id",), "action LIKE ANY(%(operator)s)"),
    "orders": _Kind(
        "orders",
        (
            "order_id",
            "created_at",
            "updated_at",
            "client_id",
            "client_order_id",
            "account",
            "broker",
            "symbol",
            "side",
            "type",
            "time_in_force",
            "qty",
            "price",
            "stop_price",
            "expire_at",
            "status",
            "filled_qty",
            "avg_price",
            "broker_order_id",
            "reason",
            "workflow_id",
            "idempotency_key",
            "risk_decision",
        ),
        "created_at",
        ("created_at", "order_id"),
    ),
    "fills": _Kind(
        "fills",
        ("broker", "exec_id", "order_id", "account", "symbol", "side", "qty", "price", "fee", "filled_at", "booked_at"),
        "filled_at",
        ("filled_at", "broker", "exec_id"),
    ),
}


def columns(kind: ExportKind) -> tuple[str, ...]:
    """The columns of one kind, in export order."""
    return _KINDS[kind].columns


def key_of(kind: ExportKind, row: dict[str, Any]) -> tuple[Any, ...]:
    """The paging key of a row (the ``after`` of the next page)."""
    return tuple(row[c] for c in _KINDS[kind].key)


async def export_page(
    conn: Conn,
    kind: ExportKind,
    *,
    start: datetime,
    end: datetime,
    after: tuple[Any, ...] | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of ``kind`` in ``[start, end)`` after the key ``after``, in key order."""
    k = _KINDS[kind]
    where = [f"{k.time} >= %(start)s", f"{k.time} < %(end)s"]
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "limit": limit,
        "risk": list(RISK_ACTIONS),
        "operator": list(OPERATOR_ACTIONS),
    }
    if k.where:
        where.append(k.where)
    if after is not None:
        names = [f"after{i}" for i in range(len(after))]
        where.append(f"({', '.join(k.key)}) > ({', '.join(f'%({n})s' for n in names)})")
        params.update(zip(names, after, strict=True))
    statement = (
        f"SELECT {', '.join(k.columns)} FROM {k.table} WHERE {' AND '.join(where)}"
        f" ORDER BY {', '.join(k.key)} LIMIT %(limit)s"
    )
    cur = await conn.execute(statement, params)  # composed of the fixed names above
    return await cur.fetchall()
