"""``python -m devstack`` (what ``make run`` runs): the whole stack on one machine, in the foreground.

Starts, in order: the embedded Postgres (unless ``DATABASE_URL`` is set), the Temporal dev server with its
web UI (state in ``data/temporal/temporal.db``), the migrations (and, in development, the registration of
the quick-start accounts ``desk-1`` and ``desk-2``), the local FIX venue when
``EXODUS_FIX__LOCAL_VENUE=true`` (then the worker also owns broker ``fix``), the local Alpaca venue when
``EXODUS_ALPACA__LOCAL_VENUE=true`` (then the worker owns broker ``alpaca`` and talks to it, and the account
``alpaca-1`` is registered for it), the worker and the API. Prints
where everything is, then supervises: a worker, API, Temporal server, FIX or Alpaca venue that exits is restarted with
backoff (``devstack.supervise``) and the embedded Postgres is started again if it stops, each with a line
saying so, while the rest keeps running. Ctrl-C stops it all; running it again resumes every order where it
was. Logs go to ``data/logs/``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

from core.db import apply_migrations
from core.errors import ConfigError
from core.logs import readable
from core.settings import get_settings
from devstack.services import EmbeddedPostgres, port_open, start_dev_server, start_python, wait_for_port
from devstack.supervise import Supervisor
from devstack.venues.alpaca.local import LOCAL_ACCOUNT as ALPACA_ACCOUNT
from devstack.venues.alpaca.local import local_venue_env as alpaca_venue_env
from store.auth import register_account

_BANNER = """
  Exodus is running.

    API            http://{api}            (OpenAPI docs: http://{api}/docs)
    Temporal UI    {ui}/namespaces/{ns}/workflows
    Temporal gRPC  {temporal}
    Metrics        http://{api}/metrics (API)   http://127.0.0.1:{wport}/metrics (worker)
    Postgres       {pg}
    Logs           {logs}/
{auth}

  Try it:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","clientOrderId":"demo-'$RANDOM'","symbol":"AAPL","side":"BUY","qty":100}}'

  Ctrl-C stops everything; `make run` again resumes where it left off.
"""

_FIX_BANNER = """
  FIX            local venue {key} on port {port} (QuickFIX store and logs in {store}/); the worker owns
                 broker "fix" ({begin}). Route an order over FIX:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","clientOrderId":"fix-'$RANDOM'","symbol":"AAPL","side":"BUY","qty":100,"broker":"fix"}}'
"""


_ALPACA_BANNER = """
  Alpaca         local venue on http://127.0.0.1:{port} (Trading API v2, trade_updates on /stream); the worker
                 owns broker "alpaca", account {account} is registered for it. Route an order to Alpaca:

    curl -s -X POST http://{api}/api/v1/orders -H 'Content-Type: application/json' \\
      -d '{{"clientId":"desk-1","account":"{account}","clientOrderId":"alpaca-'$RANDOM'",'\\
'"symbol":"AAPL","side":"BUY","qty":10,"broker":"alpaca"}}'
"""


#: Registered in development so that the README's quick start works without set-up (orders name accounts).
QUICKSTART_ACCOUNTS = ("desk-1", "desk-2")


async def _register_quickstart_accounts(url: str, *, alpaca: bool = False) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        async with conn.transaction():
            for account in QUICKSTART_ACCOUNTS:
                await register_account(
                    conn, account=account, actor="devstack", description="quick-start account", replace=False
                )
            if alpaca:
                await register_account(
                    conn,
                    account=ALPACA_ACCOUNT,
                    actor="devstack",
                    broker="alpaca",
                    description="quick-start account at the local Alpaca venue",
                    replace=False,
                )


def _auth_banner(sources: list[str], registered: bool) -> str:
    if sources:
        lines = [f"    Auth           {', '.join(sources)}: every call needs 'Authorization: Bearer <key or JWT>'"]
    else:
        lines = [
            "    Auth           !!! DISABLED: no identity source is configured. Every caller has every role",
            "                   (answers carry X-Exodus-Auth: disabled). Development only, 127.0.0.1 only;",
            "                   EXODUS_AUTH__API_KEYS=true and `.venv/bin/python -m api.keys create ...` turn it on.",
        ]
    if registered:
        lines.append(
            f"    Accounts       {', '.join(QUICKSTART_ACCOUNTS)} registered for the quick start "
            "(more: .venv/bin/python -m api.keys accounts add <name>)"
        )
    return "\n".join(lines)


def main() -> int:
    """Run the stack until Ctrl-C, restarting a worker, API, Temporal server or local venue that exits."""
    settings = get_settings()
    data = settings.data_dir.resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    api_addr = f"{settings.api.host}:{settings.api.port}"
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    pg = None
    supervisor = Supervisor()
    try:
        settings.check_api_security()  # the API would refuse to start; say so before starting anything
        if settings.database_url:
            url = settings.database_url
            print("  Postgres: using DATABASE_URL", flush=True)
        else:
            print(f"  Postgres: starting the embedded server in {data / 'postgres'} ...", flush=True)
            pg = EmbeddedPostgres(data / "postgres")
            url = pg.url

        host, _, port = settings.temporal.address.rpartition(":")
        if settings.temporal.start_dev_server:
            if port_open(host or "127.0.0.1", int(port)):
                raise ConfigError(
                    f"something already listens on {settings.temporal.address}: stop it, or set "
                    "EXODUS_TEMPORAL__START_DEV_SERVER=false to use that server"
                )
            print(
                f"  Temporal: starting the dev server on {settings.temporal.address}"
                f" (UI on :{settings.temporal.ui_port}) ...",
                flush=True,
            )
            temporal_log = logs / "temporal.log"

            def start_temporal(wait: bool = False) -> subprocess.Popen[bytes]:
                return start_dev_server(
                    db_file=data / "temporal" / "temporal.db",
                    port=int(port),
                    ui_port=settings.temporal.ui_port,
                    log=temporal_log.open("ab"),
                    ip=host if host not in ("", "localhost") else "127.0.0.1",
                    wait=wait,
                )

            supervisor.add("Temporal dev server", start_temporal, log=temporal_log, proc=start_temporal(wait=True))
        print("  Postgres: applying migrations ...", flush=True)
        applied = asyncio.run(apply_migrations(url))
        if applied:
            print(f"  Postgres: applied {', '.join(applied)}", flush=True)
        if settings.environment == "dev":
            asyncio.run(_register_quickstart_accounts(url, alpaca=settings.alpaca.local_venue))

        env = {"DATABASE_URL": url}
        worker_log, api_log = logs / "worker.log", logs / "api.log"
        worker_env = dict(env)
        if settings.fix.local_venue:
            fx = settings.fix
            if port_open("127.0.0.1", fx.port):
                raise ConfigError(
                    f"something already listens on port {fx.port} (fix.port): stop it, or set EXODUS_FIX__PORT"
                )
            print(f"  FIX: starting the local venue on port {fx.port} ({fx.begin_string}) ...", flush=True)
            fix_log = logs / "fix-venue.log"
            fix_venue = supervisor.add(
                "FIX venue", lambda: start_python("sim.fix_venue", env=env, log=fix_log.open("ab")), log=fix_log
            )
            assert fix_venue.proc is not None
            wait_for_port("127.0.0.1", fx.port, timeout=30, process=fix_venue.proc)
            if "fix" not in settings.worker.brokers:
                worker_env["EXODUS_WORKER__BROKERS"] = json.dumps([*settings.worker.brokers, "fix"])
        if settings.alpaca.local_venue:
            alpaca_port = settings.alpaca.local_venue_port
            if port_open("127.0.0.1", alpaca_port):
                raise ConfigError(
                    f"something already listens on port {alpaca_port} (alpaca.local_venue_port): stop it, or set "
                    "EXODUS_ALPACA__LOCAL_VENUE_PORT"
                )
            print(f"  Alpaca: starting the local venue on port {alpaca_port} ...", flush=True)
            alpaca_log = logs / "alpaca-venue.log"
            venue_env = {**env, **alpaca_venue_env(settings)}
            alpaca_venue = supervisor.add(
                "Alpaca venue",
                lambda: start_python("devstack.venues.alpaca", env=venue_env, log=alpaca_log.open("ab")),
                log=alpaca_log,
            )
            assert alpaca_venue.proc is not None
            wait_for_port("127.0.0.1", alpaca_port, timeout=30, process=alpaca_venue.proc)
            owned = json.loads(worker_env.get("EXODUS_WORKER__BROKERS") or json.dumps(settings.worker.brokers))
            if "alpaca" not in owned:
                worker_env["EXODUS_WORKER__BROKERS"] = json.dumps([*owned, "alpaca"])
            worker_env.update(alpaca_venue_env(settings))
        supervisor.add(
            "worker", lambda: start_python("worker", env=worker_env, log=worker_log.open("ab")), log=worker_log
        )
        supervisor.add("API", lambda: start_python("api", env=env, log=api_log.open("ab")), log=api_log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopping:
            supervisor.poll()
            try:
                if httpx.get(f"http://{api_addr}/ready", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            if not stopping:
                print(
                    f"\n  The stack is not ready after 60s; still trying (see {logs}/):{_tail(worker_log)}", flush=True
                )
        if not stopping:
            print(
                _BANNER.format(
                    api=api_addr,
                    ui=settings.temporal.ui_url,
                    ns=settings.temporal.namespace,
                    temporal=settings.temporal.address,
                    wport=settings.worker.metrics_port,
                    pg=url if settings.database_url else f"embedded ({data / 'postgres'})",
                    logs=logs,
                    auth=_auth_banner(settings.identity_sources(), settings.environment == "dev"),
                ),
                flush=True,
            )
        if settings.fix.local_venue and not stopping:
            print(
                _FIX_BANNER.format(
                    key=f"{settings.fix.target_comp_id}<-{settings.fix.sender_comp_id}",
                    port=settings.fix.port,
                    store=data / "fix-venue",
                    begin=settings.fix.begin_string,
                    api=api_addr,
                ),
                flush=True,
            )
        if settings.alpaca.local_venue and not stopping:
            print(
                _ALPACA_BANNER.format(port=settings.alpaca.local_venue_port, account=ALPACA_ACCOUNT, api=api_addr),
                flush=True,
            )
        pg_down_since: float | None = None
        while not stopping:
            supervisor.poll()
            if pg is not None:
                pg_down_since = _watch_postgres(pg, pg_down_since)
            time.sleep(0.5)
        return 0
    except (ConfigError, RuntimeError, TimeoutError) as e:
        print(f"\n  make run failed: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("\n  Stopping ...", flush=True)
        supervisor.stop_all()
        if pg is not None:
            pg.stop()
        print(f"  Stopped. State is kept in {settings.data_dir}/; `make run` resumes.", flush=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "".join(f"\n      | {readable(line)}" for line in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return " (no log)"


def _watch_postgres(pg: EmbeddedPostgres, down_since: float | None) -> float | None:
    """Start the embedded Postgres again when it died (the worker and API wait for it meanwhile)."""
    if pg.running:
        return None
    now = time.monotonic()
    if down_since is None:
        print("  the embedded Postgres stopped; starting it again ...", flush=True)
        down_since = now
    try:
        pg.resume()
    except Exception as e:
        print(f"  starting Postgres again failed ({type(e).__name__}: {e}); retrying", flush=True)
        return down_since
    print(f"  Postgres is running again (down {now - down_since:.0f}s)", flush=True)
    return None


if __name__ == "__main__":
    sys.exit(main())
