"""``python -m core.audit``: verify the audit trail, write a checkpoint, export a period, tell one order's life.

```
python -m core.audit verify [--checkpoints FILE] [--json]      # exit status 1 on any break
python -m core.audit checkpoint [--checkpoints FILE]
python -m core.audit export --from 2026-01-01 --to 2026-02-01 [--kind audit|risk|operator|orders|fills]
                            [--format csv|jsonl] [--out FILE]
python -m core.audit order-history <order id> [--json] [--no-temporal]
```

The database is ``DATABASE_URL``, else the embedded Postgres of ``make run`` (``<data dir>/postgres``). The
checkpoint file is ``audit.checkpoint_file`` (default ``<data dir>/audit/checkpoints.jsonl``) and the key
``EXODUS_AUDIT__CHECKPOINT_KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from core.audit import read_checkpoints, take_checkpoint, verify_trail
from core.export import EXPORT_FORMATS, EXPORT_KINDS, export_lines, parse_instant
from core.settings import Settings
from store import Conn

__all__ = ["checkpoint_path", "main", "order_history", "parser", "run"]


def checkpoint_path(settings: Settings) -> Path:
    """Where checkpoints are written and read."""
    return settings.audit.checkpoint_file or settings.data_dir / "audit" / "checkpoints.jsonl"


def _key(settings: Settings) -> str | None:
    key = settings.audit.checkpoint_key
    return key.get_secret_value() if key is not None else None


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python -m core.audit", description="The audit trail: verify, export, history.")
    sub = p.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="recompute the chain and check the checkpoints (exit 1 on a break)")
    verify.add_argument("--checkpoints", type=Path, help="checkpoint file (default: audit.checkpoint_file)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    cp = sub.add_parser("checkpoint", help="append the chain's head to the checkpoint file (and log it)")
    cp.add_argument("--checkpoints", type=Path, help="checkpoint file (default: audit.checkpoint_file)")
    export = sub.add_parser("export", help="stream one kind of record of a period [from, to) as CSV or JSON lines")
    export.add_argument("--from", dest="start", required=True, help="ISO 8601 date or time (inclusive)")
    export.add_argument("--to", dest="end", required=True, help="ISO 8601 date or time (exclusive)")
    export.add_argument("--kind", choices=EXPORT_KINDS, default="audit")
    export.add_argument("--format", choices=EXPORT_FORMATS, default="csv")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    history = sub.add_parser("order-history", help="one order's life from request to booking, from Postgres")
    history.add_argument("order_id")
    history.add_argument("--json", action="store_true", help="print the history as JSON")
    history.add_argument(
        "--no-temporal", action="store_true", help="skip the cross-check with the workflow's Temporal history"
    )
    return p


async def order_history(conn: Conn, order_id: str) -> dict[str, Any] | None:
    """One order's life from Postgres alone: its row, its timeline, its fills, its audit entries, its breaks."""
    from store.audit import entries
    from store.breaks import breaks_of
    from store.ledger import fills_of
    from store.orders import get_order
    from store.timeline import events_of

    order = await get_order(conn, order_id)
    if order is None:
        return None
    audit = await entries(conn, subject=order_id, limit=10_000)
    return {
        "order": dict(order),
        "timeline": [dict(e) for e in await events_of(conn, order_id)],
        "fills": [dict(f) for f in await fills_of(conn, order_id)],
        "audit": [dict(a) for a in reversed(audit)],
        "breaks": [dict(b) for b in await breaks_of(conn, order_id)],
    }


async def _temporal_cross_check(settings: Settings, order_id: str, history: dict[str, Any]) -> dict[str, Any]:
    # The workflow's own state while Temporal still retains it: its status must be the row's.
    from core.domain import workflow_id_for
    from core.temporal import connect

    try:
        client = await asyncio.wait_for(connect(settings, identity="exodus-audit"), 10)
        handle = client.get_workflow_handle(workflow_id_for(order_id))
        description = await handle.describe()
        state = await handle.query("state")
    except Exception as e:  # retention deleted it, or Temporal is not reachable: Postgres is the archive
        return {"available": False, "reason": f"{type(e).__name__}: {e}"[:300]}
    status = getattr(state, "status", None)
    workflow_status = getattr(status, "value", status)
    row_status = history["order"].get("status")
    return {
        "available": True,
        "workflowStatus": description.status.name if description.status else None,
        "historyLength": description.raw_description.workflow_execution_info.history_length,
        "orderStatus": workflow_status,
        "agrees": workflow_status == row_status,
    }


def _print_history(history: dict[str, Any]) -> None:
    o = history["order"]
    print(
        f"order {o['order_id']}  {o['side']} {o['qty']} {o['symbol']} {o['type']} {o.get('price') or ''} "
        f"{o['time_in_force']}  client {o['client_id']}/{o['client_order_id']}  account {o['account']}  "
        f"broker {o['broker']} ({o.get('broker_order_id') or '-'})  status {o['status']} "
        f"filled {o['filled_qty']} @ {o.get('avg_price') or '-'}"
    )
    print("timeline:")
    for e in history["timeline"]:
        print(f"  {e['at']:%Y-%m-%d %H:%M:%S.%f}  #{e['seq']:<3} {e['kind']:<18} {e['status']:<17} {e['detail']}")
    print("fills:")
    for f in history["fills"]:
        print(f"  {f['filled_at']:%Y-%m-%d %H:%M:%S.%f}  {f['broker']}:{f['exec_id']}  {f['qty']} @ {f['price']}")
    print("audit:")
    for a in history["audit"]:
        print(f"  {a['at']:%Y-%m-%d %H:%M:%S.%f}  #{a['id']} {a['action']} by {a['actor']}  {json.dumps(a['detail'])}")
    if history["breaks"]:
        print("breaks:")
        for b in history["breaks"]:
            print(f"  {b['detected_at']:%Y-%m-%d %H:%M:%S}  {b['kind']}  {b['detail']}")
    temporal = history.get("temporal")
    if temporal is not None:
        if temporal["available"]:
            verdict = "agrees" if temporal["agrees"] else "DISAGREES"
            print(
                f"temporal: workflow {temporal['workflowStatus']}, {temporal['historyLength']} events, "
                f"order {temporal['orderStatus']} ({verdict} with Postgres)"
            )
        else:
            print(f"temporal: not available ({temporal['reason']}); Postgres is the archive")


async def run(argv: Sequence[str], *, url: str, settings: Settings) -> int:
    """Run one command against the database at ``url``; return the exit status."""
    args = parser().parse_args(list(argv))

    @asynccontextmanager
    async def connection() -> AsyncIterator[Conn]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
            yield conn

    if args.command == "verify":
        path = args.checkpoints or checkpoint_path(settings)
        try:
            checkpoints = read_checkpoints(path)
        except ValueError as e:
            print(f"BROKEN: {e}", file=sys.stderr)
            return 1
        async with connection() as conn:
            report = await verify_trail(conn, checkpoints, _key(settings))
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            print(
                f"{'OK' if report.ok else 'BROKEN'}: {report.rows} rows (head row {report.last_id}, {report.head}); "
                f"{report.checkpoints} checkpoints from {path} ({report.signed} signed)"
            )
            for problem in report.problems:
                print(f"  problem: {problem}")
            for warning in report.warnings:
                print(f"  warning: {warning}")
            print(f"  retention: keep the archive {settings.audit.retention_days} days (Exodus deletes none of it)")
        return 0 if report.ok else 1
    if args.command == "checkpoint":
        async with connection() as conn:
            cp = await take_checkpoint(conn, args.checkpoints or checkpoint_path(settings), _key(settings))
        print(json.dumps(cp))
        return 0
    if args.command == "export":
        try:
            start, end = parse_instant(args.start, "--from"), parse_instant(args.end, "--to")
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
        out = args.out.open("w", encoding="utf-8", newline="") if args.out else sys.stdout
        try:
            async for line in export_lines(connection, args.kind, args.format, start=start, end=end):
                out.write(line)
        finally:
            if args.out:
                out.close()
        return 0
    async with connection() as conn:
        history = await order_history(conn, args.order_id)
    if history is None:
        print(f"no order {args.order_id} in Postgres", file=sys.stderr)
        return 1
    if not args.no_temporal:
        history["temporal"] = await _temporal_cross_check(settings, args.order_id, history)
    if args.json:
        print(json.dumps(history, indent=2, default=str))
    else:
        _print_history(history)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m core.audit``."""
    from core.settings import get_settings

    argv = sys.argv[1:] if argv is None else argv
    parser().parse_args(list(argv))  # --help and usage errors before touching a database
    settings = get_settings()
    server = None
    if settings.database_url:
        url = settings.database_url
    else:
        from devstack.services import EmbeddedPostgres

        server = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")  # shared with make run, if it is up
        url = server.url
    try:
        return asyncio.run(run(argv, url=url, settings=settings))
    finally:
        del server  # held until here (pgserver stops only a server it started itself)
