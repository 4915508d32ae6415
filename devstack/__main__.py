"""``python -m devstack`` (what ``make run`` runs): the whole stack on one machine, in the foreground.

Starts, in order: the embedded Postgres (unless ``DATABASE_URL`` is set), the Temporal dev server with its
web UI (state in ``data/temporal/temporal.db``), the migrations (and, in development, the registration of
the quick-start accounts ``desk-1`` and ``desk-2``), the local venue of every broker whose settings section says
``local_venue=true`` (``EXODUS_FIX__LOCAL_VENUE=true``, ``EXODUS_ALPACA__LOCAL_VENUE=true``: the broker's spec names
its venue, the venue's ``LAUNCH`` says how to start it; then the worker also owns that broker and is paired with
the venue, and the venue's accounts are registered), the worker and the API. Prints where everything is, then
supervises: a worker, API, Temporal server or local venue that exits is restarted with backoff
(``devstack.supervise``) and the embedded Postgres is started again if it stops, each with a line saying so,
while the rest keeps running. Ctrl-C stops it all; running it again resumes every order where it was. Logs go to
``data/logs/``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import psycopg
from psycopg.rows import dict_row

from brokers import BROKERS
from core.db import apply_migrations
from core.errors import ConfigError
from core.logs import readable
from core.settings import Settings, get_settings
from devstack.services import EmbeddedPostgres, port_open, start_dev_server, start_python, wait_for_port
from devstack.supervise import Supervisor
from devstack.venues import Launch, launch_of
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

#: Registered in development so that the README's quick start works without set-up (orders name accounts).
QUICKSTART_ACCOUNTS = ("desk-1", "desk-2")


async def _register_quickstart_accounts(url: str, venue_accounts: Sequence[tuple[str, str, str]] = ()) -> None:
    """Register the quick-start accounts, and ``(account, broker, description)`` of the local venues."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True, row_factory=dict_row) as conn:
        async with conn.transaction():
            for account in QUICKSTART_ACCOUNTS:
                await register_account(
                    conn, account=account, actor="devstack", description="quick-start account", replace=False
                )
            for account, broker, description in venue_accounts:
                await register_account(
                    conn, account=account, actor="devstack", broker=broker, description=description, replace=False
                )


def _venue_starter(module: str, env: dict[str, str], log: Path) -> Callable[[], subprocess.Popen[bytes]]:
    """What the supervisor calls to start (and restart) a local venue: ``python -m module``."""

    def start() -> subprocess.Popen[bytes]:
        return start_python(module, env=env, log=log.open("ab"))

    return start


def local_venues(settings: Settings) -> list[tuple[str, str, Launch]]:
    """``(broker, venue module, launch)`` of every broker whose local venue ``make run`` starts."""
    return [
        (name, spec.venue.module, launch_of(spec.venue.module))
        for name, spec in BROKERS.items()
        if spec.local_venue_wanted(settings) and spec.venue is not None and spec.venue.module is not None
    ]


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
        venues = local_venues(settings)
        if settings.environment == "dev":
            venue_accounts = [(a, name, d) for name, _, launch in venues for a, d in launch.accounts(settings)]
            asyncio.run(_register_quickstart_accounts(url, venue_accounts))

        env = {"DATABASE_URL": url}
        worker_log, api_log = logs / "worker.log", logs / "api.log"
        worker_env = dict(env)
        owned = list(settings.worker.brokers)
        for name, module, launch in venues:
            # (not ``port``: start_temporal above reads that one whenever the supervisor restarts Temporal)
            venue_port = launch.port(settings)
            if port_open("127.0.0.1", venue_port):
                raise ConfigError(
                    f"something already listens on port {venue_port} (the local {name} venue's): stop it, or set "
                    f"{launch.port_setting}"
                )
            detail = f" ({launch.detail(settings)})" if launch.detail(settings) else ""
            print(f"  {name}: starting the local venue on port {venue_port}{detail} ...", flush=True)
            venue_log = logs / f"{name}-venue.log"
            venue = supervisor.add(
                f"{name} venue", _venue_starter(module, {**env, **launch.env(settings)}, venue_log), log=venue_log
            )
            assert venue.proc is not None
            wait_for_port("127.0.0.1", venue_port, timeout=30, process=venue.proc)
            if name not in owned:
                owned.append(name)
            worker_env.update(launch.env(settings))
        if owned != settings.worker.brokers:
            worker_env["EXODUS_WORKER__BROKERS"] = json.dumps(owned)
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
        for _, _, launch in venues:
            banner = launch.banner(settings, api_addr)
            if banner and not stopping:
                print(banner, flush=True)
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
