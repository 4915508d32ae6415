"""Parsing the project's own source files in tests (for the layering and "no SQL elsewhere" checks)."""

from __future__ import annotations

import ast
from pathlib import Path


def parse(source: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, asked again once when CPython 3.11 < 3.11.9 reports a false recursion-depth mismatch.

    The AST constructor's depth counter is shared by the interpreter's threads in those releases
    (python/cpython#106905): while another thread builds AST nodes (a library inspecting source), a parse can fail
    with ``SystemError: AST constructor recursion depth mismatch`` although the source is fine. Seen once in a
    full ``make test``. A second failure is raised.
    """
    try:
        return ast.parse(source, filename)
    except SystemError as e:
        if "recursion depth mismatch" not in str(e):
            raise
        return ast.parse(source, filename)


def parse_file(path: Path, filename: str | None = None) -> ast.Module:
    """The parsed module of ``path``."""
    return parse(path.read_text(), filename or str(path))
