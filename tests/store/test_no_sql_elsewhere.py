"""SQL on the shared tables lives in ``store/``: routes, activities, the worker and workflows hold none.

Checked on the source's syntax tree, so a new statement anywhere else fails here with its file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.sources import parse, parse_file

ROOT = Path(__file__).resolve().parents[2]
#: Packages that run no statement of their own: they call ``store``.
NO_SQL = ["api", "activities", "worker", "workflows"]
#: Every package whose SQL on a shared table would be a second home.
SOURCE = ["core", "brokers", "sim", "devstack", *NO_SQL]
SHARED_TABLES = (
    r"orders|order_events|fills|positions|cash|trading_state|audit_log|reconciliation_breaks|unmatched_reports"
    r"|risk_\w+|accounts|api_keys|market_quotes|broker_sessions|broker_reports"
)
SHARED = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN)\s+({SHARED_TABLES})\b")
SQL = re.compile(r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|ON\s+CONFLICT)\b", re.S)
#: Reads of shared tables that stay where they are, and why.
ALLOWED_SHARED = {
    # The chaos run's final checks read the tables as an auditor would, through their own connection.
    "devstack/chaos.py",
}
#: Calls that run a statement (a caller may still open the transaction and pipeline mode: it owns them).
RUNS = {"execute", "executemany", "cursor", "copy"}


def _sources(packages: list[str]) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
            found.append((node.lineno, text))
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                lines.add(first.value.lineno)
    return lines


def test_routes_activities_the_worker_and_workflows_run_no_statement_of_their_own() -> None:
    problems = []
    for path in _sources(NO_SQL):
        tree = parse_file(path)
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RUNS:
                problems.append(f"{rel}:{node.lineno}: .{node.func.attr}(...)")
        docs = _docstrings(tree)
        for line, text in _strings(tree):
            if line not in docs and SQL.search(text):
                problems.append(f"{rel}:{line}: SQL {text.strip()[:60]!r}")
    assert problems == [], "move these into store/:\n" + "\n".join(problems)


def test_the_shared_tables_are_queried_only_in_store() -> None:
    problems = []
    for path in _sources(SOURCE):
        rel = str(path.relative_to(ROOT))
        if rel in ALLOWED_SHARED:
            continue
        tree = parse_file(path, rel)
        docs = _docstrings(tree)
        for line, text in _strings(tree):
            if line not in docs and SHARED.search(text):
                problems.append(f"{rel}:{line}: {text.strip()[:80]!r}")
    assert problems == [], "SQL on a shared table outside store/:\n" + "\n".join(problems)


def test_the_checks_see_a_statement_where_there_is_one() -> None:
    # The patterns themselves: what the two tests above look for is found in a route-like module.
    tree = parse('async def route(conn):\n    await conn.execute(f"SELECT order_id FROM orders WHERE x = %s", (1,))\n')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") in RUNS]
    texts = [text for _, text in _strings(tree)]
    assert calls and any(SQL.search(t) for t in texts) and any(SHARED.search(t) for t in texts)
