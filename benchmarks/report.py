"""Print a benchmark report as a table."""

from __future__ import annotations

from typing import Any

__all__ = ["print_report"]


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_report(report: dict[str, Any]) -> None:
    """Print the figures of ``report`` (as returned by ``benchmarks.run.run``)."""
    cfg = report["configuration"]
    m = report["machine"]
    print()
    print(f"  Exodus order lifecycle vs the engine's ceiling · run {report['run_id']} {report.get('label') or ''}")
    print(
        f"  {m['logical_cpus']} CPUs ({m['cpu_model']}), "
        f"load {m['load_average_at_start']} -> {m['load_average_at_end']}; "
        f"Temporal {cfg['temporal_db']}; {cfg['repeat']} x {cfg['duration_seconds']:g} s per level and system"
    )
    print()
    header = (
        f"  {'system':<14} {'conc':>5} {'orders/s':>9} {'(min-max)':>13}   {'decision ms p50/p90/p99':>25}   "
        f"{'done ms p50/p99':>17}  {'err':>4}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    figures = report["figures"]
    ratios = report.get("ratios", {})
    levels = [str(x) for x in cfg["levels"]]
    for level in levels:
        for name in cfg["systems"]:
            f = figures.get(name, {}).get(level)
            if not f:
                continue
            t, d, lc = f["throughput_per_s"], f["decision_ms"], f["lifecycle_ms"]
            print(
                f"  {name:<14} {level:>5} {t['median']:>9.1f} {'(' + _f(t['min']) + '-' + _f(t['max']) + ')':>13}   "
                f"{_f(d['p50']) + ' / ' + _f(d['p90']) + ' / ' + _f(d['p99']):>25}   "
                f"{_f(lc['p50'], 0) + ' / ' + _f(lc['p99'], 0):>17}  {f['error_count']:>4}"
                + (f"  ({f['pending']} answered 202 pending)" if f.get("pending") else "")
            )
        tr = ratios.get("throughput_by_level", {}).get(level)
        dr = ratios.get("decision_p50_by_level", {}).get(level)
        if tr is not None:
            print(f"  {'  exodus/ceil':<14} {level:>5} {_f(tr, 2):>9} {'':>13}   {'decision x' + _f(dr, 2):>25}")
        for key, label in (("vs_minimal", "  exodus/min"), ("two_workers_vs_one", "  2w/1w")):
            r = ratios.get(key, {}).get(level)
            if r:
                print(
                    f"  {label:<14} {level:>5} {_f(r['throughput'], 2):>9} {'':>13}   "
                    f"{'decision x' + _f(r['decision_p50'], 2):>25}"
                )
        print()

    roles = None
    print("  CPU milliseconds per completed order (measured windows), and cores busy")
    for name in cfg["systems"]:
        for level in levels:
            f = figures.get(name, {}).get(level)
            if not f or "cpu_ms_per_order" not in f["cpu"]:
                continue
            per = f["cpu"]["cpu_ms_per_order"]
            if roles is None:
                roles = list(per)
                print(
                    "  "
                    + f"{'system':<14} {'conc':>5} "
                    + " ".join(f"{r[:14]:>14}" for r in roles)
                    + f" {'total':>8} {'cores':>6}"
                )
            print(
                "  "
                + f"{name:<14} {level:>5} "
                + " ".join(f"{per.get(r, 0):>14.1f}" for r in roles)
                + f" {f['cpu']['cpu_ms_per_order_total']:>8.1f} {f['cpu']['cores_busy']:>6.2f}"
            )
    print()
    print(
        "  peak RSS MB: "
        + ", ".join(f"{role} {v.get('kernel_peak_mb', v['sampled_peak_mb'])}" for role, v in report["peak_rss"].items())
    )
    shape = report["shape"]
    e, c = shape["exodus_order"], shape["ceiling_workflow"]
    print(
        "  engine work per order (exodus / ceiling): "
        + ", ".join(
            f"{k.replace('_', ' ')} {e[k]}/{c[k]}"
            for k in (
                "events",
                "workflow_tasks",
                "local_activities",
                "activities",
                "signals",
                "search_attribute_upserts",
            )
        )
    )
    m_shape = shape.get("minimal_workflow")
    if m_shape:
        print(
            f"  the minimal durable order: {m_shape['events']} events, {m_shape['workflow_tasks']} workflow tasks "
            f"(Exodus' market order {e['events']} / {e['workflow_tasks']})"
        )
    order_shapes = shape.get("order_shapes") or {}
    if order_shapes:
        print("  engine work per order shape (one real order each):")
        print(
            f"    {'shape':<24} {'events':>7} {'wf tasks':>9} {'local act':>10} {'activities':>11} {'signals':>8} "
            f"{'upserts':>8} {'timers':>7}"
        )
        for name, sh in order_shapes.items():
            if "error" in sh:
                print(f"    {name:<24} not measured: {sh['error']}")
                continue
            print(
                f"    {name:<24} {sh['events']:>7} {sh['workflow_tasks']:>9} {sh['local_activities']:>10} "
                f"{sh['activities']:>11} {sh['signals']:>8} {sh['search_attribute_upserts']:>8} {sh['timers']:>7}"
            )
    db = report.get("postgres") or {}
    if db:
        print(
            f"  ledger after the run: orders {db.get('orders_by_status')}, fills {db.get('fills')}, "
            f"reconciliation breaks {db.get('reconciliation_breaks')}, unmatched reports {db.get('unmatched_reports')}"
        )
    print()
    peak = ratios.get("peak_throughput")
    if peak:
        print(
            f"  peak sustained throughput: exodus {peak['exodus']:.1f} orders/s, "
            f"ceiling {peak['ceiling']:.1f} workflows/s"
        )
        print(f"  ratio to engine ceiling: {peak['ratio']:.2f}")
    dec = ratios.get("rest_decision_vs_bare_update_with_start")
    if dec and dec.get("ratio") is not None:
        print(
            f"  REST risk answer vs bare update-with-start (concurrency {dec['concurrency']}, p50): "
            f"{dec['exodus_p50_ms']:.1f} ms vs {dec['bare_p50_ms']:.1f} ms = {dec['ratio']:.2f}x"
        )
    print(f"  results: {report.get('path')}")
    print()
