"""The benchmark harness runs end to end and writes the figures it promises (behaviour, not timing)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.run import Options, run

pytestmark = pytest.mark.asyncio


async def test_a_tiny_benchmark_run_writes_every_figure_to_json(tmp_path: Path) -> None:
    opts = Options(
        levels=[2],
        systems=["exodus", "ceiling", "minimal", "exodus-2w"],
        duration=1.0,
        warmup=0.2,
        repeat=1,
        output_dir=tmp_path,
        temporal_db="memory",
        quiet=True,
        probe=2,
    )
    report = await run(opts)

    written = json.loads(Path(report["path"]).read_text())
    assert Path(report["path"]).parent == tmp_path
    for key in ("machine", "versions", "git", "configuration", "shape", "figures", "ratios", "peak_rss", "postgres"):
        assert key in written, key
    assert written["machine"]["logical_cpus"] >= 1
    assert written["versions"]["temporalio"]
    for system in ("exodus", "ceiling", "minimal", "exodus-2w"):
        figures = written["figures"][system]["2"]
        assert figures["completed"] > 0 and figures["error_count"] == 0, figures["errors"]
        assert set(figures["decision_ms"]) >= {"p50", "p90", "p99"}
        assert set(figures["lifecycle_ms"]) >= {"p50", "p99"}
        assert figures["throughput_per_s"]["median"] > 0
        assert set(figures["cpu"]["cpu_seconds"]) >= {"temporal server", "worker", "api", "ceiling worker", "postgres"}
    assert isinstance(written["ratios"]["peak_throughput"]["ratio"], float)
    assert written["ratios"]["rest_decision_vs_bare_update_with_start"]["ratio"] > 0
    assert {"temporal server", "worker", "api"} <= set(written["peak_rss"])
    # Same engine work per order as the order it stands in for.
    exodus, ceiling = written["shape"]["exodus_order"], written["shape"]["ceiling_workflow"]
    assert ceiling["activities"] == exodus["activities"]
    # The second worker ran (and used CPU) only in the two-worker level.
    assert written["figures"]["exodus-2w"]["2"]["cpu"]["cpu_seconds"]["worker 2"] > 0
    assert written["figures"]["exodus"]["2"]["cpu"]["cpu_seconds"]["worker 2"] == 0
    assert set(written["ratios"]["two_workers_vs_one"]["2"]) == {"throughput", "decision_p50"}
    # The minimal durable order is the smaller ceiling; each order shape was counted from a real history. How many
    # workflow tasks a history takes depends on timing (a signal landing while a task runs takes a task of its own,
    # three events), so the comparison is of the events that are commands and inputs: the rest.
    minimal = written["shape"]["minimal_workflow"]
    assert (minimal["activities"], minimal["signals"], minimal["local_activities"]) == (1, 1, 2)
    assert minimal["search_attribute_upserts"] == 0 and minimal["updates"] == 1

    def commands_and_inputs(shape: dict[str, float]) -> float:
        return shape["events"] - 3 * shape["workflow_tasks"]

    assert commands_and_inputs(minimal) < commands_and_inputs(ceiling), (minimal, ceiling)
    assert written["ratios"]["vs_minimal"]["2"]["throughput"] > 0
    shapes = written["shape"]["order_shapes"]
    assert set(shapes) == {"market, one fill", "market, several fills", "limit, rests, canceled", "denied by risk"}
    for name, shape in shapes.items():
        assert "error" not in shape, (name, shape)
        assert shape["events"] > 0 and shape["workflow_tasks"] > 0
    assert shapes["market, several fills"]["signals"] > shapes["market, one fill"]["signals"]
    assert shapes["denied by risk"]["activities"] == 0
    # Every order of the run was booked and filled (the shapes' canceled and denied one aside); nothing reached a
    # closed workflow.
    assert written["postgres"]["orders_by_status"] == {
        "FILLED": written["postgres"]["orders_by_status"]["FILLED"],
        "CANCELED": 1,
        "DENIED": 1,
    }
    assert written["postgres"]["unmatched_reports"] == 0


async def test_each_desks_benchmark_orders_alternate_sides_so_its_position_stays_small() -> None:
    # A full run sends tens of thousands of orders: a desk that only bought would reach the risk policy's position
    # limit and the last levels would measure denials (MAX_POSITION), not orders.
    from benchmarks.load import DESKS, order_body

    net: dict[tuple[str, str], int] = {}
    for n in range(40_000):
        body = order_body("r", n)
        key = (body["clientId"], body["symbol"])
        net[key] = net.get(key, 0) + (body["qty"] if body["side"] == "BUY" else -body["qty"])
    assert len({client for client, _ in net}) == DESKS
    assert max(abs(q) for q in net.values()) < 1_000, net
