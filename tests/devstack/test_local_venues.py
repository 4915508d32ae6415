"""``make run`` starts the local venue of every broker whose settings say so, in one loop over the registry, and
installs only the libraries of the brokers it runs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from brokers import BROKERS
from core.errors import ConfigError
from core.settings import AlpacaSettings, FixSettings, Settings, WorkerSettings
from devstack import extras
from devstack.__main__ import local_venues
from tests.sources import parse_file

ROOT = Path(__file__).resolve().parents[2]


def test_no_local_venue_starts_unless_its_brokers_settings_say_so() -> None:
    assert local_venues(Settings()) == []


def test_each_local_venue_named_by_a_setting_starts_from_its_spec() -> None:
    settings = Settings(fix=FixSettings(local_venue=True, port=9901), alpaca=AlpacaSettings(local_venue=True))
    venues = local_venues(settings)
    assert [(name, module) for name, module, _ in venues] == [
        ("fix", "devstack.venues.fix"),
        ("alpaca", "devstack.venues.alpaca"),
    ]
    by_name = {name: launch for name, _, launch in venues}
    assert by_name["fix"].port(settings) == 9901
    assert by_name["alpaca"].port(settings) == settings.alpaca.local_venue_port
    assert (
        by_name["alpaca"].env(settings)["EXODUS_ALPACA__BASE_URL"]
        == f"http://127.0.0.1:{settings.alpaca.local_venue_port}"
    )
    assert by_name["alpaca"].accounts(settings) == [("alpaca-1", "quick-start account at the local Alpaca venue")]
    assert 'broker "fix"' in by_name["fix"].banner(settings, "127.0.0.1:8000")


def test_make_run_has_no_special_case_for_any_broker() -> None:
    """``devstack/__main__.py`` names no broker: every venue comes from the registry (its docstring aside)."""
    tree = parse_file(ROOT / "devstack" / "__main__.py")
    docstrings = {id(node.body[0].value) for node in ast.walk(tree) if _has_docstring(node)}  # type: ignore[attr-defined]
    names = set(BROKERS) - {"paper"}  # "paper" is the default broker, named by the settings, not by make run
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value.lower()
        elif isinstance(node, ast.Attribute):
            text = node.attr.lower()
        elif isinstance(node, ast.Name):
            text = node.id.lower()
        else:
            continue
        for name in names:
            assert name not in text.replace("-", "_").split("_") and name not in text.split(), (name, text)


def _has_docstring(node: ast.AST) -> bool:
    return (
        isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and bool(node.body)
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    )


def test_make_run_installs_the_extras_of_the_brokers_it_runs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    fix, alpaca = BROKERS["fix"], BROKERS["alpaca"]
    monkeypatch.setattr(type(fix), "missing_libraries", lambda spec: list(spec.libraries))  # nothing installed
    assert extras.missing_extras(Settings()) == []  # the paper broker needs nothing beyond the base
    assert extras.missing_extras(Settings(fix=FixSettings(local_venue=True))) == ["fix"]
    owned = Settings(worker=WorkerSettings(brokers=["paper", "alpaca", "fix"]), fix=FixSettings(local_venue=True))
    assert extras.missing_extras(owned) == [alpaca.extra, fix.extra]
    with pytest.raises(ConfigError, match="unknown broker 'nope'"):
        extras.missing_extras(Settings(worker=WorkerSettings(brokers=["nope"])))


def test_a_worker_refuses_a_broker_whose_libraries_are_missing_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fix = BROKERS["fix"]
    monkeypatch.setattr(type(fix), "missing_libraries", lambda spec: list(spec.libraries))
    with pytest.raises(ConfigError, match=r"needs quickfix: pip install -e '\.\[fix\]'"):
        fix.require_libraries()


def test_the_image_installs_every_registered_brokers_extra_without_naming_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert extras.main(["--all"]) == 0
    printed = capsys.readouterr().out.strip().split(",")
    assert printed == [spec.extra for spec in BROKERS.values() if spec.extra]
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert "python -m devstack.extras --all" in dockerfile
    # A new broker's extra needs no edit here: no extra is named by hand.
    assert not [line for line in dockerfile.splitlines() if "pip install" in line and "[fix" in line]
