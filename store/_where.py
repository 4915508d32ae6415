"""Conditions that restrict rows to a principal's scope (shared by the listing functions)."""

from __future__ import annotations

from typing import Any

from core.auth import ALL, Scope


def scope_conditions(scope: Scope, **columns: str) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) restricting rows to ``scope``.

    Keywords name the column of each dimension, e.g. ``scope_conditions(s, clients="client_id", accounts="account")``.
    """
    where: list[str] = []
    params: list[Any] = []
    for dimension, column in columns.items():
        value = getattr(scope, dimension)
        if value == ALL:
            continue
        where.append(f"{column} = ANY(%s)")
        params.append(list(value))
    return where, params


def clause(where: list[str]) -> str:
    """``WHERE a AND b``, or nothing."""
    return ("WHERE " + " AND ".join(where)) if where else ""
