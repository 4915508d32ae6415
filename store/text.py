"""What Postgres cannot store, replaced at the boundary, and JSON documents as statements take them.

``text`` and ``jsonb`` cannot hold U+0000, and a lone surrogate is not UTF-8: ``pg_text`` replaces them so no
input (a broker's reject text, a cancel reason) can make a write fail for good. ``jsonb`` wraps a document for
a parameter, with decimals and times as strings (what the SQL functions read with ``->>`` and casts).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

__all__ = ["NUL_REPLACEMENT", "dumps", "jsonb", "pg_text", "pg_value"]

#: What replaces a NUL (Postgres ``text`` and ``jsonb`` cannot hold U+0000).
NUL_REPLACEMENT = "\u2400"  # ␀

_T = TypeVar("_T")


def pg_text(text: str) -> str:
    """``text`` as Postgres can store it: NUL shown as ␀, lone surrogates (not UTF-8) as U+FFFD."""
    if text.isascii():
        return text.replace("\x00", NUL_REPLACEMENT) if "\x00" in text else text
    if "\x00" in text:
        text = text.replace("\x00", NUL_REPLACEMENT)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def pg_value(value: _T) -> _T:
    """``pg_text`` applied to every string in ``value`` (lists, tuples and dict keys and values too)."""
    if isinstance(value, str):
        return pg_text(value)  # type: ignore[return-value]
    if isinstance(value, list):
        return [pg_value(v) for v in value]  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(pg_value(v) for v in value)  # type: ignore[return-value]
    if isinstance(value, dict):
        return {pg_value(k): pg_value(v) for k, v in value.items()}  # type: ignore[return-value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON; what JSON has no type for (decimals, times) as its string."""
    return json.dumps(value, default=str, separators=(",", ":"))


def jsonb(value: Any) -> Jsonb:
    """``value`` as a ``jsonb`` parameter (``dumps``)."""
    return Jsonb(value, dumps=dumps)
