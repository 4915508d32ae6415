"""The risk decision benchmark (issue 11) runs and reports what it promises (behaviour, not timing)."""

from __future__ import annotations

import pytest

from benchmarks.risk_latency import measure

pytestmark = pytest.mark.asyncio


async def test_a_tiny_risk_latency_run_reports_decisions_per_second_per_level() -> None:
    figures = await measure([1, 3], seconds=0.5, warmup=0.2, pool_size=3, workflow_orders=0)
    assert figures["pool"] == 3
    assert {"p50", "p99"} <= set(figures["check"]) and figures["check"]["p50"] > 0
    assert figures["one_row_commit"]["p50"] > 0
    assert [row["accounts"] for row in figures["throughput"]] == [1, 3]
    for row in figures["throughput"]:
        # Every decision is a real one, and none is refused (the benchmark's policy refuses nothing).
        assert row["decisions"] > 0 and row["decisions_per_second"] > 0 and row["denied"] == 0, row
        assert {"p50", "p99"} <= set(row["latency_ms"])
        assert row["cpu_ms_per_decision"]["bench_process"] > 0 and row["cpu_ms_per_decision"]["postgres"] > 0
