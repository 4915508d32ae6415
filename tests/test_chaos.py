"""The small chaos run (``make chaos`` runs the long one): orders flow while the worker is SIGKILLed twice, the
Temporal server and Postgres restart once each; afterwards every check of ``devstack.chaos`` passes.

It starts its own stack (embedded Postgres, Temporal dev server on a SQLite file, worker and API subprocesses),
like ``make run``, and takes about 30-40 s.
"""

from __future__ import annotations

import pytest

from devstack.chaos import ChaosPlan, run_chaos

pytestmark = pytest.mark.asyncio


@pytest.mark.timeout(400)
async def test_orders_survive_worker_kills_and_temporal_and_postgres_restarts() -> None:
    report = await run_chaos(ChaosPlan.quick())
    print(report.render())
    assert report.faults == {"worker_kill": 2, "temporal_restart": 1, "postgres_restart": 1}
    accepted = sum(o.outcome == "accepted" for o in report.orders)
    assert accepted >= 20 and report.fills > 0 and report.cancels_sent > 0, report.render()
    assert report.working_verified > 0, report.render()
    assert report.ok, report.render()
