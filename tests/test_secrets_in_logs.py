"""No secret reaches a log: a full run (``python -m api`` and ``python -m worker`` as subprocesses, JSON logs at
DEBUG) configured with distinctive secrets, sent authenticated requests and refused ones, writes none of them.

Secrets: an API key (``python -m api.keys create``) and a wrong one with its real id, a JWT HS256 secret and the
tokens it signs (valid, expired, signed with another secret), a development token and a wrong one, an MT5 bridge
account's token, and Alpaca keys (the worker owns broker ``alpaca`` at its local venue, which checks them, and one
order goes there). Every file the run wrote (the processes' stdout/stderr, everything under its data directory) is
scanned for each secret and for every ``Authorization`` header value sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import create_database, temporal_address
from tests.test_startup import start, stop, wait_for_log
from tests.waiting import until

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parent.parent

ISSUER = "https://idp.secrets.test"
AUDIENCE = "exodus-secrets"
JWT_SECRET = "jwt-hs256-secret-ZQX7mark-9f3c1e5a7b2d4f6e8a0c"
DEV_TOKEN = "dev-token-ZQX7mark-4b8e2f6a1c3d5e7f"
MT5_TOKEN = "mt5-ea-token-ZQX7mark-7d1f3b5c9e2a4c6e"
ALPACA_KEY_ID = "PKZQX7MARK3F5A7C9E1B"
ALPACA_SECRET = "alpaca-secret-ZQX7mark-2c4e6a8b0d1f3a5c7e9b"


def _jwt(name: str, *, expires_in: int, secret: str = JWT_SECRET) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": name,
        "iat": now - 3600,
        "nbf": now - 3600,
        "exp": now + expires_in,
        "roles": ["trader"],
        "exodus_clients": [name],
        "exodus_accounts": [name],
        "exodus_brokers": "*",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_full_run_logs_no_secret(
    temporal_env: WorkflowEnvironment, postgres_admin_url: str, tmp_path: Path, reserve_port: Callable[[], int]
) -> None:
    url = await create_database(postgres_admin_url, "exodus_secrets")
    data = tmp_path / "data"
    port, alpaca_port = reserve_port(), reserve_port()
    alpaca_url = f"http://127.0.0.1:{alpaca_port}"
    env = {
        "DATABASE_URL": url,
        "EXODUS_DATA_DIR": str(data),
        "EXODUS_TEMPORAL__ADDRESS": temporal_address(temporal_env),
        "EXODUS_TEMPORAL__TASK_QUEUE": f"secrets-{os.getpid()}-{port}",
        "EXODUS_API__PORT": str(port),
        "EXODUS_WORKER__METRICS_PORT": "0",
        "EXODUS_WORKER__TEMPORAL_METRICS_PORT": "0",
        "EXODUS_PAPER__TICK_INTERVAL_MS": "40",
        "EXODUS_LOG__FORMAT": "json",
        "EXODUS_LOG__LEVEL": "DEBUG",
        "EXODUS_AUTH__API_KEYS": "true",
        "EXODUS_AUTH__JWT__HS256_SECRET": JWT_SECRET,
        "EXODUS_AUTH__JWT__ISSUER": ISSUER,
        "EXODUS_AUTH__JWT__AUDIENCE": AUDIENCE,
        "EXODUS_API__TOKENS": json.dumps({"desk-t": DEV_TOKEN}),
        "EXODUS_MT5__ACCOUNTS": json.dumps({"mt5-desk": {"token": MT5_TOKEN}}),
        # The worker also owns Alpaca, at its local venue, with these keys (the venue checks them).
        "EXODUS_WORKER__BROKERS": json.dumps(["paper", "alpaca"]),
        "EXODUS_ALPACA__LOCAL_VENUE_PORT": str(alpaca_port),
        "EXODUS_ALPACA__BASE_URL": alpaca_url,
        "EXODUS_ALPACA__DATA_URL": alpaca_url,
        "EXODUS_ALPACA__STREAM_URL": f"ws://127.0.0.1:{alpaca_port}/stream",
        "EXODUS_ALPACA__KEY_ID": ALPACA_KEY_ID,
        "EXODUS_ALPACA__SECRET_KEY": ALPACA_SECRET,
    }
    keys_out = tmp_path / "keys.out"  # the CLI's stderr, and its stdout without the key it prints once

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "api.keys", *args],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        with keys_out.open("a") as out:
            out.write(done.stderr)
        return done

    for account in ("desk-a", "desk-j", "desk-t"):
        keys("accounts", "add", account, "--broker", "paper")
    keys("accounts", "add", "alpaca-1", "--broker", "alpaca")
    scope = ["--client", "desk-a", "--account", "desk-a", "--account", "alpaca-1", "--broker", "*"]
    created = keys("create", "--name", "desk-a", "--role", "trader", *scope)
    api_key = created.stdout.strip().splitlines()[-1]
    assert api_key.startswith("exo_"), created.stdout
    key_secret = api_key.rpartition("_")[2]
    wrong_key = api_key[: -len(key_secret)] + "W" * len(key_secret)  # its real id, a wrong secret
    good_jwt = _jwt("desk-j", expires_in=600)
    expired_jwt = _jwt("desk-j", expires_in=-1800)
    forged_jwt = _jwt("desk-j", expires_in=600, secret="forged-secret-ZQX7mark-0a1b2c3d4e5f")
    sent: list[str] = []

    worker_log, api_log, venue_log = tmp_path / "worker.log", tmp_path / "api.log", tmp_path / "alpaca.log"
    venue = subprocess.Popen(
        [sys.executable, "-m", "devstack.venues.alpaca", "--port", str(alpaca_port), "--no-journal"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=venue_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    await wait_for_log(venue_log, "Alpaca venue on", venue)
    worker = start("worker", env, worker_log)
    api = start("api", env, api_log)
    try:
        await wait_for_log(worker_log, "worker polling", worker)
        await wait_for_log(api_log, "Uvicorn running", api)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

            async def call(method: str, path: str, credential: str, **kw: object) -> httpx.Response:
                header = f"Bearer {credential}"
                sent.append(header)
                return await http.request(method, path, headers={"Authorization": header}, **kw)  # type: ignore[arg-type]

            for i, (credential, client) in enumerate(
                [(api_key, "desk-a"), (good_jwt, "desk-j"), (DEV_TOKEN, "desk-t")]
            ):
                order = {"clientId": client, "clientOrderId": f"s{i}", "symbol": "AAPL", "side": "BUY", "qty": 10}
                r = await call("POST", "/api/v1/orders", credential, json=order)
                assert r.status_code in (201, 202), r.text  # authenticated: the order went to the worker
                r = await call("GET", "/api/v1/orders", credential)
                assert r.status_code == 200, r.text
            alpaca_order = {"clientId": "desk-a", "account": "alpaca-1", "broker": "alpaca", "clientOrderId": "al"}
            alpaca_order |= {"symbol": "AAPL", "side": "BUY", "qty": 7}

            async def alpaca_quoted() -> bool:
                # Risk prices an Alpaca market order from Alpaca's own quotes: the worker's first poll must be in.
                r = await call("GET", "/api/v1/quotes?symbol=AAPL", api_key)
                return r.status_code == 200 and any(
                    q["source"] == "alpaca" and not q["stale"] for q in r.json()["data"]
                )

            await until("an Alpaca quote for AAPL", alpaca_quoted, interval=0.2)
            r = await call("POST", "/api/v1/orders", api_key, json=alpaca_order)
            assert r.status_code in (201, 202), r.text
            for credential in (wrong_key, expired_jwt, forged_jwt, DEV_TOKEN + "x", "exo_garbage"):
                r = await call("GET", "/api/v1/orders", credential)
                assert r.status_code == 401, (credential, r.text)
            # The EA's bridge with a wrong token (the right one is configured above).
            r = await call("POST", "/api/v1/bridge/mt5/accounts/mt5-desk/heartbeat", MT5_TOKEN + "x", json={})
            assert r.status_code == 401, r.text
        await asyncio.sleep(1)  # the worker logs the fills
    finally:
        assert await stop(api) is not None
        assert await stop(worker) is not None
        assert await stop(venue) is not None

    secrets = {
        "API key": api_key,
        "API key secret": key_secret,
        "wrong API key secret": wrong_key.rpartition("_")[2],
        "JWT HS256 secret": JWT_SECRET,
        "development token": DEV_TOKEN,
        "MT5 token": MT5_TOKEN,
        "Alpaca key id": ALPACA_KEY_ID,
        "Alpaca secret key": ALPACA_SECRET,
        "valid JWT": good_jwt,
        "expired JWT": expired_jwt,
        "forged JWT": forged_jwt,
        # A JWT's signature alone is the part that proves possession.
        "valid JWT signature": good_jwt.rpartition(".")[2],
    }
    secrets.update({f"Authorization header #{i}": h.removeprefix("Bearer ") for i, h in enumerate(sent)})
    files = [worker_log, api_log, venue_log, keys_out, *_files(data)]
    assert worker_log.stat().st_size > 0 and api_log.stat().st_size > 0
    # JSON lines at DEBUG were written, and the orders reached the worker.
    worker_lines = [json.loads(line) for line in worker_log.read_text().splitlines() if line.startswith("{")]
    assert any(line["level"] == "DEBUG" for line in worker_lines)
    assert sum("submit_order" in line["message"] for line in worker_lines) >= 4
    assert "alpaca" in worker_log.read_text()
    found = [
        (name, path.name)
        for path in files
        for name, value in secrets.items()
        if value in path.read_text(errors="replace")
    ]
    assert found == [], found
