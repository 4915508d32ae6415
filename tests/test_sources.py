"""tests/sources.py: one retry for CPython 3.11's false AST recursion-depth mismatch, nothing else swallowed."""

from __future__ import annotations

import ast

import pytest

from tests import sources


def test_a_false_depth_mismatch_is_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = ast.parse, []

    def flaky(source: str, filename: str = "<unknown>") -> ast.Module:
        calls.append(filename)
        if len(calls) == 1:
            raise SystemError("AST constructor recursion depth mismatch (before=120, after=134)")
        return real(source, filename)

    monkeypatch.setattr(sources.ast, "parse", flaky)
    assert isinstance(sources.parse("x = 1", "m.py").body[0], ast.Assign)
    assert calls == ["m.py", "m.py"]


def test_other_errors_and_a_second_mismatch_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SyntaxError):
        sources.parse("def (", "bad.py")

    def always(source: str, filename: str = "<unknown>") -> ast.Module:
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")

    monkeypatch.setattr(sources.ast, "parse", always)
    with pytest.raises(SystemError):
        sources.parse("x = 1")
