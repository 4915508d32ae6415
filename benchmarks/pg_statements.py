"""What Postgres does per order: statements, transactions, function time and CPU, one order at a time.

``python -m benchmarks.pg_statements`` starts its own stack (``benchmarks.stack.LocalStack``), turns on
Postgres' statement log (``log_min_duration_statement = 0``) and function statistics (``track_functions``),
sends ``--orders`` market orders through the REST API one at a time (each waited for until its workflow has
finished: risk decision, submission, fill, booking), then prints per order: statements executed by kind
(with their server-side time), committed transactions, calls and time of the SQL functions, and the CPU of
Postgres' processes. The embedded Postgres has neither ``pg_stat_statements`` nor ``auto_explain``, so the
statement log is what is read. A statement logged while the window is open belongs to the window's orders;
background work (sweeps, the quote writer, readiness probes) is counted too, as it is part of what Postgres
does while orders flow, and shown apart when its text says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import psycopg
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from benchmarks.load import Connections, RestOrders
from benchmarks.procstats import tree_cpu_seconds
from benchmarks.stack import LocalStack

__all__ = ["main"]

_SETTINGS = {
    "log_min_duration_statement": "0",
    "log_line_prefix": "'%m [%p] '",
    "track_functions": "'all'",
    "log_parameter_max_length": "0",
}
#: "duration: 0.123 ms  statement: ..." (simple protocol) or "... execute <name>: ..." (extended protocol).
_DURATION = re.compile(r"\[(\d+)\] LOG:\s+duration: ([0-9.]+) ms\s+(statement|parse|bind|execute)( [^:]*)?: (.*)")


def _by_process(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of Postgres' processes, by pid, with the kind of process (its title, minus details)."""
    out: dict[int, tuple[str, float]] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        with contextlib.suppress(psutil.Error):
            title = " ".join(p.cmdline())
            t = p.cpu_times()
            kind = "postmaster" if p.pid == pid else title.removeprefix("postgres: ")
            if re.search(r"\d+\.\d+\.\d+\.\d+\(\d+\)|\[local\]", kind):
                kind = "client backends"
            out[p.pid] = (kind, t.user + t.system)
    return out


def _kind(sql: str) -> str:
    text = " ".join(sql.split())
    return text[:110]


async def _stats(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, blks_hit FROM pg_stat_database"
        " WHERE datname = current_database()"
    )
    db = await cur.fetchone()
    cur = await conn.execute("SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions")
    funcs = {r[0]: (r[1], r[2], r[3]) for r in await cur.fetchall()}
    return {"db": db, "funcs": funcs}


async def run(orders: int, warmup: int, keep_log: Path | None = None, settings: dict[str, str] | None = None) -> None:
    stack = LocalStack()
    info = await stack.start()
    try:
        assert info.database_url is not None
        pg_pid = next(p.pid for p in info.processes if p.role == "postgres")
        assert pg_pid is not None
        log_path = stack.data_dir / "postgres" / "log"
        async with await psycopg.AsyncConnection.connect(info.database_url, autocommit=True) as admin:
            for name, value in {**_SETTINGS, **(settings or {})}.items():
                await admin.execute(f"ALTER SYSTEM SET {name} = {value}")
            await admin.execute("SELECT pg_reload_conf()")
            client = await Client.connect(
                info.temporal_address, namespace=info.namespace, data_converter=pydantic_data_converter
            )
            async with Connections(timeout=30) as http:
                system = RestOrders(http, info.api_url, client, uuid.uuid4().hex[:6])
                await system.register_accounts()
                for n in range(warmup):
                    _, handle = await system.submit(n)
                    await handle.result()
                await asyncio.sleep(1.0)
                await admin.execute("SELECT pg_stat_clear_snapshot()")
                before = await _stats(admin)
                offset = log_path.stat().st_size
                cpu0 = tree_cpu_seconds(pg_pid)
                procs0 = _by_process(pg_pid)
                t0 = time.perf_counter()
                for n in range(warmup, warmup + orders):
                    _, handle = await system.submit(n)
                    await handle.result()
                elapsed = time.perf_counter() - t0
                cpu1 = tree_cpu_seconds(pg_pid)
                procs1 = _by_process(pg_pid)
                await asyncio.sleep(0.7)  # the statistics collector's flush
                await admin.execute("SELECT pg_stat_clear_snapshot()")
                after = await _stats(admin)
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        if keep_log is not None:
            keep_log.write_text(text)
    finally:
        stack.stop()

    counts: Counter[str] = Counter()
    times: dict[str, float] = defaultdict(float)
    phases: Counter[str] = Counter()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _DURATION.search(line)
        if not m:
            continue
        _, ms, phase, _, sql = m.groups()
        # A statement's text may span lines (continuations start without a timestamp).
        j = i + 1
        while j < len(lines) and not re.match(r"\d{4}-\d\d-\d\d ", lines[j]):
            sql += " " + lines[j].strip()
            j += 1
        if "pg_stat" in sql or "pg_reload_conf" in sql:
            continue
        phases[phase] += 1
        times[_kind(sql)] += float(ms)
        if phase in ("statement", "execute"):
            counts[_kind(sql)] += 1
    print(f"{orders} orders in {elapsed:.1f}s, one at a time")
    print(f"Postgres CPU: {(cpu1 - cpu0) * 1000 / orders:.2f} ms per order")
    per_kind: dict[str, float] = defaultdict(float)
    for p, (kind, cpu) in procs1.items():
        per_kind[kind] += cpu - procs0.get(p, (kind, 0.0))[1]
    for kind, cpu in sorted(per_kind.items(), key=lambda kv: -kv[1]):
        if cpu > 0:
            print(f"  {cpu * 1000 / orders:6.3f} ms  {kind}")
    db0, db1 = before["db"], after["db"]
    commits, rollbacks = (db1[0] - db0[0]) / orders, (db1[1] - db0[1]) / orders
    print(f"transactions committed per order: {commits:.2f}, rolled back: {rollbacks:.2f}")
    print(f"tuples returned / fetched per order: {(db1[2] - db0[2]) / orders:.0f} / {(db1[3] - db0[3]) / orders:.0f}")
    print(f"buffer hits per order: {(db1[4] - db0[4]) / orders:.0f}")
    print(f"protocol messages logged per order: { {k: round(v / orders, 2) for k, v in phases.items()} }")
    print(f"statements executed per order: {sum(counts.values()) / orders:.2f}")
    print("\nper order  ms/order  statement")
    for sql, count in sorted(counts.items(), key=lambda kv: -times[kv[0]]):
        print(f"{count / orders:9.2f}  {times[sql] / orders:8.3f}  {sql}")
    print("\nSQL functions per order: calls, total ms, self ms")
    f0 = before["funcs"]
    for name, (calls, total, self_time) in sorted(after["funcs"].items()):
        c0, t0_, s0 = f0.get(name, (0, 0.0, 0.0))
        if calls - c0:
            per = ((calls - c0) / orders, (total - t0_) / orders, (self_time - s0) / orders)
            print(f"  {name:28s} {per[0]:6.2f} {per[1]:8.3f} {per[2]:8.3f}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.pg_statements", description=__doc__)
    p.add_argument("--orders", type=int, default=50, help="orders measured (default 50)")
    p.add_argument("--warmup", type=int, default=16, help="orders before the window (default 16)")
    p.add_argument("--keep-log", type=Path, default=None, help="write the window's Postgres log here")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another server setting for the run (ALTER SYSTEM; e.g. log_min_duration_statement=-1 to time the"
        " orders without the statement log), repeatable",
    )
    args = p.parse_args(argv)
    p_settings = dict(kv.split("=", 1) for kv in args.set)
    asyncio.run(run(args.orders, args.warmup, args.keep_log, p_settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
