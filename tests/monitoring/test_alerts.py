"""monitoring/: the alert rules pass promtool's check and their unit tests; rules and dashboard name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import core.metrics  # noqa: F401  # registers every Exodus metric

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: apt-get install prometheus; .ci/run installs it): alert rules unchecked",
)


@needs_promtool
def test_the_alert_rules_are_valid() -> None:
    done = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=MONITORING, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_the_alert_rules_pass_their_unit_tests() -> None:
    done = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"], cwd=MONITORING, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _exodus_metric_names() -> set[str]:
    names: set[str] = set()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        names.add(metric.name)
        if metric.type == "histogram":
            names.update(f"{metric.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        if metric.type == "counter":
            names.add(f"{metric.name}_total")
    return {n for n in names if n.startswith("exodus_")}


def _used(expr: str) -> set[str]:
    return set(re.findall(r"\b(exodus_[a-z0-9_]+)", expr))


def test_every_rule_has_a_unit_test_and_names_real_metrics() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    tests = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t.get("alert_rule_test", [])}
    known = _exodus_metric_names()
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    for rule in alerts:
        assert _used(rule["expr"]) <= known, (rule["alert"], _used(rule["expr"]) - known)
    untested = {r["alert"] for r in alerts} - tested
    # Every rule but these two has a unit test; these are checked by promtool's syntax check only.
    assert untested <= {"ExodusBrokerErrors", "ExodusQuotesStale", "ExodusBookingFailures"}, untested


def test_the_dashboard_shows_real_metrics_and_the_latency_quantiles() -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "exodus.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    known = _exodus_metric_names()
    for expr in exprs:
        assert _used(expr) <= known, (expr, _used(expr) - known)
    for q in ("0.5", "0.9", "0.99"):
        assert any(
            f"histogram_quantile({q}, sum by (le, stage) (rate(exodus_order_latency_seconds_bucket" in e for e in exprs
        )
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(
        (MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in dashboard["panels"] if "datasource" in p)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./monitoring/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
    assert "grafana" in compose["services"]
