"""The idle-cost benchmark's readings (benchmarks/idle.py); the benchmark itself is run by hand (README)."""

from __future__ import annotations

from prometheus_client import generate_latest

from benchmarks.idle import broker_requests, parse_args
from core.metrics import BROKER_REQUESTS


def test_broker_requests_are_read_from_the_worker_metrics_page() -> None:
    BROKER_REQUESTS.labels(broker="bench-test", call="sweep").inc(3)
    BROKER_REQUESTS.labels(broker="bench-test", call="status").inc()
    readings = broker_requests(generate_latest().decode())
    assert readings["bench-test:sweep"] == 3 and readings["bench-test:status"] == 1


def test_levels_default_to_0_1000_and_10000_resting_orders() -> None:
    opts = parse_args([])
    assert [int(x) for x in opts.levels.split(",")] == [0, 1000, 10000] and opts.sweep_seconds == 30
