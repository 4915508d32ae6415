"""Export of the archive by period, streamed: CSV or JSON lines, one page of rows in memory at a time.

``python -m core.audit export --from 2026-01-01 --to 2026-02-01 --kind fills --format csv`` and
``GET /api/v1/audit/export`` (role auditor) both use ``export_lines``. Periods are ``[from, to)``; a date alone
is midnight UTC. The SQL is ``store/export.py``'s.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Literal

from store import Conn
from store.export import EXPORT_KINDS, ExportKind, columns, export_page, key_of

__all__ = ["EXPORT_FORMATS", "EXPORT_KINDS", "ExportFormat", "export_lines", "parse_instant"]

ExportFormat = Literal["csv", "jsonl"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "jsonl")


def parse_instant(text: str, name: str) -> datetime:
    """An ISO 8601 date (midnight UTC) or date and time (UTC when no offset is given); ``ValueError`` names ``name``."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name}: not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(_plain(value))


async def export_lines(
    connection: Callable[[], AbstractAsyncContextManager[Conn]],
    kind: ExportKind,
    fmt: ExportFormat,
    *,
    start: datetime,
    end: datetime,
    page: int = 1000,
) -> AsyncIterator[str]:
    """The export as text lines (CSV with a header row, or one JSON object per line with ``record``: the kind).

    ``connection`` opens a connection per page (a pool's ``connection``), so no transaction or pooled
    connection is held while the consumer is slow.
    """
    if kind not in EXPORT_KINDS:
        raise ValueError(f"kind: one of {', '.join(EXPORT_KINDS)}")
    names = columns(kind)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if fmt == "csv":
        writer.writerow(names)
        yield buffer.getvalue()
    after: tuple[Any, ...] | None = None
    while True:
        async with connection() as conn:
            rows = await export_page(conn, kind, start=start, end=end, after=after, limit=page)
        for row in rows:
            if fmt == "csv":
                buffer.seek(0)
                buffer.truncate()
                writer.writerow([_cell(row[c]) for c in names])
                yield buffer.getvalue()
            else:
                record = {"record": kind, **{c: _plain(row[c]) for c in names}}
                yield json.dumps(record, separators=(",", ":"), default=str) + "\n"
        if len(rows) < page:
            return
        after = key_of(kind, rows[-1])
