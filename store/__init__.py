"""SQL of the shared tables, in one place: plain statements as functions that take a connection.

The manner of the FastAPI template's ``crud.py``: keyword-only functions (after the connection and, at most,
the one thing they are about) that run plain SQL; the caller owns the transaction (and pipeline mode, where it
uses it). Rows come back typed (``TypedDict`` per row shape, beside the functions that return them). Routes,
activities and the worker hold no SQL of their own (``tests/store/test_no_sql_elsewhere.py``); adapter-private
tables (``fix_*``, ``mt5_*``, ``alpaca_*``, the venue journals) stay with their adapters; the journal they share
(``broker_reports``) is here.

| module | tables |
|---|---|
| ``orders`` | ``orders`` (the read model; one writer, ``order_write()``, for one row shape, ``OrderRow``) |
| ``timeline`` | ``order_events`` |
| ``ledger`` | ``fills``, ``positions``, ``cash`` |
| ``risk`` | the decision's statements (``risk_gather()``...), reservations, reject streaks, trading states |
| ``policy`` | ``risk_policy`` (``PolicyStore``: versioned documents, cached per version) |
| ``breaks`` | ``reconciliation_breaks``, ``unmatched_reports`` |
| ``reconciliation`` | ``reconciliation_runs``, an end-of-day run's ledger side, breaks, acknowledgements |
| ``audit`` | ``audit_log`` (appends through ``audit_append()``; the chain's check) |
| ``export`` | the archive's reads by period (orders, fills, audit rows), a page at a time |
| ``auth`` | ``api_keys``, ``accounts`` |
| ``quotes`` | ``market_quotes`` (and ``QuoteWriter``, the worker's batching writer) |
| ``sessions`` | ``broker_sessions`` |
| ``stream`` | ``stream_events`` (written by migration 0021's triggers), ``stream_head``, ``stream_floor`` (pruning) |
| ``reports`` | ``broker_reports``, the report journal every broker adapter shares (``brokers.journal`` runs it) |
| ``order_lists`` | ``order_lists`` (the read model of order lists, written by their coordinator) |
| ``text`` | what Postgres cannot store (NUL, lone surrogates), replaced at this boundary |
"""

from __future__ import annotations

from typing import TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg_pool import AsyncConnectionPool

__all__ = [
    "Conn",
    "Pool",
    "audit",
    "auth",
    "breaks",
    "export",
    "ledger",
    "order_lists",
    "orders",
    "policy",
    "quotes",
    "reconciliation",
    "reports",
    "risk",
    "sessions",
    "text",
    "timeline",
]

#: A connection whose rows are dicts (``core.db.open_pool`` sets ``row_factory=dict_row``).
Conn: TypeAlias = AsyncConnection[DictRow]
#: The pool every process opens (``core.db.open_pool``).
Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]
