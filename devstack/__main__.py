"""``python -m devstack`` (what ``make run`` runs): the whole stack on one machine, in the foreground.

Starts, in order: the embedded Postgres (unless ``DATABASE_URL`` is set), the Temporal dev server with its
web UI (state in ``data/temporal/temporal.db``), the migrations (and, in development, the registration of
the quick-start accounts ``desk-1`` and ``desk-2``), the local FIX venue when
``EXODUS_FIX__LOCAL_VENUE=true`` (then the worker also owns broker ``fix``), the worker and the API. Prints
where everything is, then waits. Ctrl-C stops it all; running it again resumes every order where it was.
Logs go to ``data/logs/``.
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

from core.auth_store import register_account
from core.db import apply_migrations
from core.errors import ConfigError
from core.settings import get_settings
from devstack.services import EmbeddedPostgres, port_open, start_dev_server, start_python, wait_for_port

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


#: Registered in development so that the README's quick start works without set-up (orders name accounts).
QUICKSTART_ACCOUNTS = ("desk-1", "desk-2")


async def _register_quickstart_accounts(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        async with conn.transaction():
            for account in QUICKSTART_ACCOUNTS:
                await register_account(
                    conn, account=account, actor="devstack", description="quick-start account", replace=False
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


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, name: str, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop in {timeout:.0f}s; killing it", flush=True)
        proc.kill()
        proc.wait()


def main() -> int:
    """Run the stack until Ctrl-C (or until a part of it dies)."""
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
    temporal = worker = api = fix_venue = None
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
            temporal_log = (logs / "temporal.log").open("ab")
            temporal = start_dev_server(
                db_file=data / "temporal" / "temporal.db",
                port=int(port),
                ui_port=settings.temporal.ui_port,
                log=temporal_log,
                ip=host if host not in ("", "localhost") else "127.0.0.1",
            )
        print("  Postgres: applying migrations ...", flush=True)
        applied = asyncio.run(apply_migrations(url))
        if applied:
            print(f"  Postgres: applied {', '.join(applied)}", flush=True)
        if settings.environment == "dev":
            asyncio.run(_register_quickstart_accounts(url))

        env = {"DATABASE_URL": url}
        worker_log, api_log = logs / "worker.log", logs / "api.log"
        worker_env = dict(env)
        fix_log = logs / "fix-venue.log"
        if settings.fix.local_venue:
            fx = settings.fix
            if port_open("127.0.0.1", fx.port):
                raise ConfigError(
                    f"something already listens on port {fx.port} (fix.port): stop it, or set EXODUS_FIX__PORT"
                )
            print(f"  FIX: starting the local venue on port {fx.port} ({fx.begin_string}) ...", flush=True)
            fix_venue = start_python("sim.fix_venue", env=env, log=fix_log.open("ab"))
            wait_for_port("127.0.0.1", fx.port, timeout=30, process=fix_venue)
            if "fix" not in settings.worker.brokers:
                worker_env["EXODUS_WORKER__BROKERS"] = json.dumps([*settings.worker.brokers, "fix"])
        worker = start_python("worker", env=worker_env, log=worker_log.open("ab"))
        api = start_python("api", env=env, log=api_log.open("ab"))
        wait_for_port(settings.api.host, settings.api.port, timeout=60, process=api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stopping:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}:\n{_tail(worker_log)}")
            try:
                if httpx.get(f"http://{api_addr}/ready", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            if not stopping:
                raise RuntimeError(f"the stack did not become ready in 60s; see {logs}/\n{_tail(worker_log)}")
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
        if fix_venue is not None:
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
        children = [(worker, "worker", worker_log), (api, "API", api_log)]
        if fix_venue is not None:
            children.append((fix_venue, "FIX venue", fix_log))
        while not stopping:
            for proc, name, log in children:
                if proc.poll() is not None:
                    raise RuntimeError(f"the {name} exited with {proc.returncode}:\n{_tail(log)}")
            if temporal is not None and temporal.poll() is not None:
                raise RuntimeError(
                    f"the Temporal dev server exited with {temporal.returncode}:\n{_tail(logs / 'temporal.log')}"
                )
            time.sleep(0.5)
        return 0
    except (ConfigError, RuntimeError, TimeoutError) as e:
        print(f"\n  make run failed: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("\n  Stopping ...", flush=True)
        _stop(api, "API")
        _stop(worker, "worker")
        _stop(fix_venue, "FIX venue")
        _stop(temporal, "Temporal")
        if pg is not None:
            pg.stop()
        print("  Stopped. State is kept in data/; `make run` resumes.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
