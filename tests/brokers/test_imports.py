"""What importing the registry, the API and the worker loads of the MT5 bridge (each in a fresh interpreter).

The registry reads only each adapter's capabilities; the API serves the EA (the EA-facing bridge) and never the
worker's side (the adapter, its housekeeping, the Windows executor); the worker builds the adapter without the
EA-facing bridge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: What a process that does not own the MT5 broker must not load.
WORKER_SIDE = {"brokers.mt5.execution", "brokers.mt5.terminal", "brokers.mt5.session"}
#: What only the API (or the Windows executor, which plays the EA) loads.
EA_SIDE = {"brokers.mt5.bridge", "api.routes.bridge_mt5"}


def _loaded(code: str) -> set[str]:
    """The modules of ``brokers.mt5`` and the API's bridge routes loaded after running ``code``."""
    script = textwrap.dedent(code) + textwrap.dedent(
        """
        import json, sys
        print(json.dumps(sorted(sys.modules)))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    return {m for m in modules if m.startswith("brokers.mt5") or m == "api.routes.bridge_mt5"}


@pytest.mark.parametrize("module", ["brokers", "worker.build"])
def test_importing_the_registry_or_the_worker_loads_only_the_mt5_capabilities(module: str) -> None:
    assert _loaded(f"import {module}") == {"brokers.mt5", "brokers.mt5.config"}


def test_the_api_loads_the_ea_facing_bridge_and_not_the_worker_side() -> None:
    loaded = _loaded("import api.main")
    assert "brokers.mt5.bridge" in loaded  # what the bridge routes call
    assert not loaded & WORKER_SIDE, sorted(loaded & WORKER_SIDE)


def test_building_the_mt5_broker_loads_the_worker_side_and_not_the_ea_facing_bridge() -> None:
    loaded = _loaded(
        """
        import asyncio
        from brokers import BROKERS, BrokerContext
        from core.settings import Mt5AccountSettings, Mt5Settings, Settings

        settings = Settings(
            database_url="postgresql://localhost:1/unused",
            mt5=Mt5Settings(accounts={"xm-1": Mt5AccountSettings(token="t")}),
        )
        pool = object()  # building the adapter does not touch the pool (starting it does)
        broker = asyncio.run(BROKERS["mt5"].factory(BrokerContext(settings=settings, instruments=None, pool=pool)))
        assert type(broker).__name__ == "Mt5Broker"
        """
    )
    assert {"brokers.mt5.execution", "brokers.mt5.commands", "brokers.mt5.session"} <= loaded
    assert not loaded & EA_SIDE, sorted(loaded & EA_SIDE)


def test_the_registry_imports_the_mt5_session_check_when_first_asked(database_url: str) -> None:
    loaded = _loaded(
        f"""
        import asyncio
        import psycopg
        from psycopg.rows import dict_row
        from brokers import BROKERS

        async def ask():
            async with await psycopg.AsyncConnection.connect({database_url!r}, row_factory=dict_row) as conn:
                return await BROKERS["mt5"].session_check(conn, "xm-never-configured")

        reason = asyncio.run(ask())
        assert reason.startswith("no MT5 terminal has connected for account xm-never-configured"), reason
        """
    )
    assert "brokers.mt5.session" in loaded
    assert not loaded & (EA_SIDE | {"brokers.mt5.execution"}), sorted(loaded)
