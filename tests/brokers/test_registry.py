"""The registry of broker specs: what each spec declares holds (package, settings, venue, extra, quotes, boundary).

Adding a broker touches its folder, its venue, one registry line, one settings section and the docs: these checks
are what keeps the rest (pyproject, the Makefile, make run, the market data) from needing a hand edit.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, SecretStr, ValidationError

from brokers import BROKERS, PACKAGES
from brokers.base import BROKER_CALLS, BrokerCapabilities, BrokerContext, BrokerSpec, LocalVenue
from core.domain import OrderType, TimeInForce
from core.instruments import InstrumentCatalog
from core.marketdata import SIMULATED_SOURCES
from core.settings import AlpacaSettings, KrakenSettings, Mt5AccountSettings, Mt5Settings, OandaSettings, Settings
from devstack.venues import Launch, launch_of
from tests.sources import parse_file

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(BROKERS.values(), key=lambda s: s.name)


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_each_broker_is_one_folder_exporting_its_spec(spec: BrokerSpec) -> None:
    package = importlib.import_module(f"brokers.{spec.name}")
    assert package.SPEC is spec and "SPEC" in package.__all__
    assert f"brokers.{spec.name}" in PACKAGES  # its one registry line
    assert spec.description and spec.capabilities.order_types and spec.capabilities.time_in_force


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_the_settings_section_is_a_section_of_the_settings(spec: BrokerSpec) -> None:
    assert spec.settings_section is not None
    field = Settings.model_fields[spec.settings_section]
    assert isinstance(field.default, BaseModel)  # EXODUS_<SECTION>__<FIELD>
    assert spec.settings_of(Settings()) is not None
    if spec.venue is not None and spec.venue.module is not None:
        assert "local_venue" in type(field.default).model_fields  # EXODUS_<SECTION>__LOCAL_VENUE


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_quotes_are_stored_under_the_brokers_name(spec: BrokerSpec) -> None:
    # Risk prices a broker's orders with the source of its own name unless configured otherwise.
    assert spec.quotes is not None and spec.quotes.source == spec.name


def test_capabilities_refuse_a_name_they_do_not_have() -> None:
    # An adapter written before issue 19 names the dedupe capability by its old name: it must not silently lose it.
    with pytest.raises(ValidationError, match="dedupes_client_order_id"):
        BrokerCapabilities(
            order_types=frozenset({OrderType.MARKET}),
            time_in_force=frozenset({TimeInForce.DAY}),
            dedupes_client_order_id=True,  # type: ignore[call-arg]
        )


def test_the_simulated_sources_are_those_the_specs_say() -> None:
    assert {s.quotes.source for s in SPECS if s.quotes and s.quotes.simulated} == set(SIMULATED_SOURCES)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.venue and s.venue.module], ids=lambda s: s.name)
def test_a_local_venue_lives_above_brokers_and_runs_with_python_m(spec: BrokerSpec) -> None:
    assert spec.venue is not None and spec.venue.module == f"devstack.venues.{spec.name}"
    assert isinstance(launch_of(spec.venue.module), Launch)
    out = subprocess.run(
        [sys.executable, "-m", spec.venue.module, "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0 and "usage: python -m" in out.stdout, out.stderr


def test_a_local_venue_is_a_module_to_run_or_built_in_process() -> None:
    with pytest.raises(ValueError):
        LocalVenue()
    with pytest.raises(ValueError):
        LocalVenue(module="devstack.venues.x", in_process=lambda ctx: None)


def test_every_extra_is_declared_and_installed_by_make_test() -> None:
    extras = _pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^ALL_EXTRAS\s*:=\s*(\S+)", makefile, re.M)
    assert match is not None
    installed = set(match.group(1).split(","))
    assert installed == set(extras)  # type: ignore[arg-type]
    for spec in SPECS:
        if spec.extra is not None:
            assert spec.extra in extras, spec.name  # type: ignore[operator]
    # The base install has no broker's library (make run installs only the brokers configured).
    base = " ".join(_pyproject()["project"]["dependencies"])  # type: ignore[index]
    for spec in SPECS:
        for lib in spec.libraries:
            assert lib.lower() not in base.lower(), lib


def test_packages_are_found_not_listed() -> None:
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    assert find["namespaces"] is False and "tests" in find["exclude"]  # type: ignore[index]
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=find["include"], exclude=find["exclude"]))  # type: ignore[index]
    for spec in SPECS:
        assert f"brokers.{spec.name}" in found
        if spec.venue and spec.venue.module:
            assert spec.venue.module in found
    assert {"brokers._template", "devstack.venues._template", "core", "api.routes", "sim"} <= found


def test_importing_the_registry_loads_no_brokers_library_and_no_simulated_venue() -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import brokers, devstack.venues.fix, devstack.venues.alpaca, devstack.extras
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    libraries = {lib for spec in SPECS for lib in spec.libraries}
    assert libraries and not loaded & libraries
    assert not {m for m in loaded if m == "sim" or m.startswith("sim.")}
    executions = {m for m in loaded if m.startswith("brokers.") and m.endswith(".execution")}
    assert executions <= {"brokers.paper.execution"}  # the in-process paper broker is cheap and always there


def _buildable_settings() -> Settings:
    return Settings(
        database_url="postgresql://localhost:1/unused",
        alpaca=AlpacaSettings(key_id=SecretStr("k"), secret_key=SecretStr("s")),
        oanda=OandaSettings(token=SecretStr("t"), account_id="101-001-0000000-001"),
        kraken=KrakenSettings(api_key=SecretStr("k"), api_secret=SecretStr("czM=")),
        mt5=Mt5Settings(accounts={"xm-1": Mt5AccountSettings(token="t")}),
    )


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
async def test_every_adapter_has_every_call_behind_the_shared_storage_boundary(
    spec: BrokerSpec, instruments: InstrumentCatalog, pool: AsyncConnectionPool
) -> None:
    broker = await spec.factory(BrokerContext(settings=_buildable_settings(), instruments=instruments, pool=pool))
    try:
        assert broker.name == spec.name and broker.capabilities == spec.capabilities
        for call in BROKER_CALLS:
            assert getattr(getattr(type(broker), call), "__storage_boundary__", False), (spec.name, call)
    finally:
        await broker.close()


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _runtime_imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module imported, enclosing function or None)`` of every import that runs (not under TYPE_CHECKING)."""
    tree = parse_file(path)
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child, function)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if isinstance(node, ast.Import):
            found.extend((a.name, function) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, function))
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def test_sim_imports_only_core() -> None:
    first_party = {"brokers", "devstack", "api", "activities", "workflows", "worker", "benchmarks", "tests"}
    for path in sorted((ROOT / "sim").rglob("*.py")):
        for module, _ in _runtime_imports(path):
            assert module.split(".")[0] not in first_party, f"{_module_of(path)} imports {module}"


def test_brokers_reach_sim_only_through_a_specs_venue_hook_and_never_devstack() -> None:
    for path in sorted((ROOT / "brokers").rglob("*.py")):
        for module, function in _runtime_imports(path):
            top = module.split(".")[0]
            assert top != "devstack", f"{_module_of(path)} imports {module}"
            if top == "sim":
                hooks = {
                    (f"brokers.{s.name}", s.venue.in_process.__name__)
                    for s in SPECS
                    if s.venue is not None and s.venue.in_process is not None
                }
                assert (_module_of(path), function) in hooks, f"{_module_of(path)}.{function} imports {module}"
