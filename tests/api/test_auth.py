"""Authentication and authorization behaviour: JWT and API key refusals with their reasons, auditing and
counting of refusals, development mode, scopes on live orders, tenants, the accounts registry, the key CLI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.keys import run as keys_cli
from api.main import create_app, register_configured_accounts
from api.registry import registered_broker
from core.auth import ALL, Role, Scope
from core.domain import derive_order_id
from core.errors import ConfigError
from core.instruments import InstrumentCatalog
from core.settings import ApiSettings, AuthSettings, Mt5AccountSettings, Mt5Settings, Settings
from store.auth import get_account
from tests.api.authkit import AUDIENCE, ISSUER, AuthEnv, Idp, bearer
from tests.conftest import temporal_address
from tests.harness import Stack, register_accounts, unique

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
async def env(
    temporal_env: WorkflowEnvironment,
    postgres_admin_url: str,
    instruments: InstrumentCatalog,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[AuthEnv]:
    async with AuthEnv.open(
        postgres_admin_url,
        temporal_env.client,
        temporal_address(temporal_env),
        instruments,
        tmp_path_factory.mktemp("idp"),
    ) as e:
        yield e


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("exodus_auth_failures_total", {"reason": reason}) or 0.0


async def audit_rows(env: AuthEnv, action: str) -> list[dict[str, Any]]:
    return await env.fetch("SELECT actor, subject, detail FROM audit_log WHERE action = %s ORDER BY id", action)


# ------------------------------------------------------------------------------------------------ JWT


def _claims(**overrides: Any) -> dict[str, Any]:
    claims = Idp.claims("alice", ["auditor"], Scope.everything())
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    ("make", "code", "message"),
    [
        (lambda idp: idp.rs256(_claims(exp=int(time.time()) - 120)), "TOKEN_EXPIRED", "token expired"),
        (lambda idp: idp.rs256(_claims(nbf=int(time.time()) + 120)), "TOKEN_NOT_YET_VALID", "not yet valid"),
        (lambda idp: idp.rs256(_claims(iat=int(time.time()) + 120)), "TOKEN_NOT_YET_VALID", "not yet valid"),
        (lambda idp: idp.rs256(_claims(aud="someone-else")), "TOKEN_AUDIENCE", "wrong audience"),
        (lambda idp: idp.rs256(_claims(iss="https://evil.example")), "TOKEN_ISSUER", "wrong issuer"),
        (
            lambda idp: idp.rs256(_claims(), key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "TOKEN_SIGNATURE",
            "bad signature",
        ),
        (lambda idp: idp.hs256(_claims(), secret="x" * 40), "TOKEN_SIGNATURE", "bad signature"),
        (lambda idp: idp.rs256(_claims(), kid="other-key"), "TOKEN_KEY_UNKNOWN", "no signing key"),
        (lambda idp: jwt.encode(_claims(), None, algorithm="none"), "TOKEN_ALGORITHM", "not accepted"),
        (lambda idp: idp.rs256(_claims(exp=None)), "TOKEN_CLAIMS", "missing claim 'exp'"),
        (lambda idp: "a.b.c", "TOKEN_MALFORMED", "malformed"),
    ],
    ids=[
        "expired",
        "nbf-future",
        "iat-future",
        "audience",
        "issuer",
        "signature",
        "hs256-secret",
        "kid",
        "alg-none",
        "no-exp",
        "malformed",
    ],
)
async def test_invalid_jwts_get_401_with_the_reason(env: AuthEnv, make: Any, code: str, message: str) -> None:
    before = failures(code.lower())
    r = await env.http.get("/api/v1/audit", headers=bearer(make(env.idp)))
    assert r.status_code == 401, r.text
    reason = r.json()["reasons"][0]
    assert reason["code"] == code and reason["field"] == "Authorization" and message in reason["message"]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert failures(code.lower()) == before + 1


async def test_clock_skew_within_the_leeway_is_accepted(env: AuthEnv) -> None:
    token = env.idp.rs256(_claims(exp=int(time.time()) - 10))  # leeway is 30 s
    assert (await env.http.get("/api/v1/audit", headers=bearer(token))).status_code == 200


async def test_roles_and_scope_come_from_the_claims(env: AuthEnv) -> None:
    claims = Idp.claims("bob", "trader unknown-role", Scope(clients=["desk-j"], accounts=["desk-j"], brokers=ALL))
    token = env.idp.hs256(claims)
    r = await env.http.get("/api/v1/audit", headers=bearer(token))
    assert r.status_code == 403 and r.json()["reasons"][0]["code"] == "FORBIDDEN_ROLE"
    r = await env.http.post(
        "/api/v1/orders",
        json={"clientId": "desk-other", "clientOrderId": "x1", "symbol": "AAPL", "side": "BUY", "qty": 1},
        headers=bearer(token),
    )
    assert r.status_code == 403 and r.json()["reasons"][0]["field"] == "clientId"


# ------------------------------------------------------------------------------------------------ refusals


async def test_refusals_are_audited_with_the_presented_name_and_bounded(env: AuthEnv) -> None:
    text = await env.key("desk-z", [Role.TRADER], Scope(clients=["desk-z"], accounts=["desk-z"], brokers=ALL))
    key_id = text.split("_")[1]
    huge_name = "n" * 5000
    attempts = [
        (bearer(text[:-1] + ("A" if text[-1] != "A" else "B")), "key_wrong"),
        (bearer("exo_" + "x" * 8000), "key_malformed"),
        (bearer(env.idp.hs256(_claims(sub=huge_name, aud="nope"))), "token_audience"),
        (bearer("z" * 10000), "token_unknown"),
        ({"Authorization": "Basic " + "y" * 3000}, "token_malformed"),
        ({}, "token_missing"),
    ]
    before = {reason: failures(reason) for _, reason in attempts}
    start = (await env.fetch("SELECT coalesce(max(id), 0) AS n FROM audit_log"))[0]["n"]
    for headers, _ in attempts:
        r = await env.http.get("/api/v1/orders/" + "p" * 3000, headers=headers)
        assert r.status_code == 401, r.text
    for _, reason in attempts:
        assert failures(reason) == before[reason] + 1, reason
    rows = await env.fetch(
        "SELECT actor, subject, detail::text AS detail FROM audit_log WHERE id > %s ORDER BY id", start
    )
    assert len(rows) == len(attempts)
    assert all(len(r["actor"]) <= 64 and len(r["subject"]) <= 160 and len(r["detail"]) <= 400 for r in rows), rows
    assert rows[0]["actor"] == f"desk-z (key {key_id})"
    assert rows[2]["actor"].startswith("nnnn")
    assert rows[5]["actor"] == "anonymous"
    # The presented secret is never stored.
    everything = await env.fetch("SELECT actor || subject || detail::text AS t FROM audit_log")
    secret = text.split("_", 2)[2]
    assert not any(secret[:-1] in r["t"] for r in everything)


async def test_forbidden_and_out_of_scope_are_audited_as_access_denied(env: AuthEnv) -> None:
    text = await env.key("trader-q", [Role.TRADER], Scope(clients=["desk-q"], accounts=["desk-q"], brokers=ALL))
    before = failures("forbidden_role")
    r = await env.http.post(
        "/api/v1/operator/trading-state", json={"state": "ACTIVE", "reason": "lift"}, headers=bearer(text)
    )
    assert r.status_code == 403 and failures("forbidden_role") == before + 1
    denied = await audit_rows(env, "ACCESS_DENIED")
    assert denied[-1]["actor"] == "trader-q" and denied[-1]["detail"]["reason"] == "FORBIDDEN_ROLE"
    assert denied[-1]["subject"] == "POST /api/v1/operator/trading-state"


# ------------------------------------------------------------------------------------------------ keys


async def test_key_cli_creates_rotates_and_revokes(env: AuthEnv, capsys: pytest.CaptureFixture[str]) -> None:
    url = env.settings.require_database_url()
    args = ["create", "--name", "ops-cli", "--role", "operator", "--client", "*", "--account", "*", "--broker", "*"]
    assert await keys_cli(args, url=url, actor="cli:tests") == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("exo_") and "shown once" in err
    assert (await env.http.get("/api/v1/operator/trading-state", headers=bearer(key))).status_code == 200
    stored = await env.fetch("SELECT * FROM api_keys WHERE name = 'ops-cli'")
    assert len(stored) == 1 and key.split("_", 2)[2] not in str(stored)
    key_id = stored[0]["key_id"]

    assert await keys_cli(["list"], url=url) == 0
    listing = capsys.readouterr().out
    assert key_id in listing and "roles=operator" in listing and key.split("_", 2)[2] not in listing

    # Rotation with a grace period: both keys work until it ends.
    assert await keys_cli(["rotate", key_id, "--grace-seconds", "600"], url=url) == 0
    new_key = capsys.readouterr().out.strip()
    for k in (key, new_key):
        assert (await env.http.get("/api/v1/operator/trading-state", headers=bearer(k))).status_code == 200
    # Revoked: refused with the reason.
    assert await keys_cli(["revoke", key_id], url=url) == 0
    r = await env.http.get("/api/v1/operator/trading-state", headers=bearer(key))
    assert r.status_code == 401 and r.json()["reasons"][0]["code"] == "KEY_REVOKED"
    # Rotation without grace: the old key stops at once.
    new_id = new_key.split("_")[1]
    assert await keys_cli(["rotate", new_id], url=url) == 0
    newest = capsys.readouterr().out.strip()
    assert (await env.http.get("/api/v1/operator/trading-state", headers=bearer(new_key))).status_code == 401
    assert (await env.http.get("/api/v1/operator/trading-state", headers=bearer(newest))).status_code == 200
    assert await keys_cli(["revoke", "nosuchkeyidxx"], url=url) == 1
    actions = [r["action"] for r in await env.fetch("SELECT action FROM audit_log WHERE actor = 'cli:tests'")]
    assert actions == ["API_KEY_CREATED"]


async def test_expired_key_is_refused(env: AuthEnv) -> None:
    text = await env.key("short-lived", [Role.AUDITOR], Scope.everything())
    await env.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'short-lived'")
    r = await env.http.get("/api/v1/audit", headers=bearer(text))
    assert r.status_code == 401 and r.json()["reasons"][0]["code"] == "KEY_EXPIRED"


async def test_admin_manages_keys_and_accounts_over_the_api(env: AuthEnv) -> None:
    admin = await env.key("root", [Role.ADMIN], Scope.everything())
    r = await env.http.post(
        "/api/v1/admin/keys",
        json={
            "name": "desk-n",
            "roles": ["trader"],
            "scope": {"clients": ["desk-n"], "accounts": ["desk-n"], "brokers": "*"},
        },
        headers=bearer(admin),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith("exo_") and created["tenant"] == "desk-n" and "secretHash" not in created
    listed = (await env.http.get("/api/v1/admin/keys", headers=bearer(admin))).json()["data"]
    assert created["keyId"] in {k["keyId"] for k in listed} and all("key" not in k for k in listed)
    # The new trader's account is not registered yet: its order is refused before any workflow.
    body = {"clientId": "desk-n", "clientOrderId": "n1", "symbol": "AAPL", "side": "BUY", "qty": 1}
    r = await env.http.post("/api/v1/orders", json=body, headers=bearer(created["key"]))
    assert r.status_code == 422 and r.json()["reasons"][0]["code"] == "UNKNOWN_ACCOUNT"
    assert r.json()["reasons"][0]["field"] == "account"
    r = await env.http.put(
        "/api/v1/admin/accounts/desk-n", json={"broker": "paper", "brokerAccount": "P-1"}, headers=bearer(admin)
    )
    assert r.status_code == 200 and r.json()["broker"] == "paper" and r.json()["createdBy"] == "root"
    bad = await env.http.put("/api/v1/admin/accounts/desk-n", json={"broker": "nyse"}, headers=bearer(admin))
    assert bad.status_code == 422 and bad.json()["reasons"][0]["field"] == "broker"
    assert (await env.http.delete(f"/api/v1/admin/keys/{created['keyId']}", headers=bearer(admin))).status_code == 200
    r = await env.http.get("/api/v1/orders", headers=bearer(created["key"]))
    assert r.status_code == 401


# ------------------------------------------------------------------------------------------------ trading state


async def test_lifting_a_halt_needs_the_risk_role(env: AuthEnv) -> None:
    scope = Scope.everything()
    operator = await env.key("op-1", [Role.OPERATOR], scope)
    risk = await env.key("risk-1", [Role.RISK], scope)

    async def set_state(who: str, state: str) -> httpx.Response:
        body = {"scope": "ACCOUNT", "key": "desk-halt", "state": state, "reason": "t"}
        return await env.http.post(
            "/api/v1/operator/trading-state", json=body, headers={**bearer(who), "X-Actor": "mallory"}
        )

    r = await set_state(operator, "HALTED")
    assert r.status_code == 200 and r.json()["updatedBy"] == "op-1", "X-Actor never names the audited identity"
    assert "X-Exodus-Auth" not in r.headers
    for state in ("REDUCING", "ACTIVE"):  # both loosen a HALT
        r = await set_state(operator, state)
        assert r.status_code == 403 and r.json()["reasons"][0]["field"] == "state", r.text
    assert (await set_state(risk, "REDUCING")).status_code == 200
    assert (await set_state(operator, "HALTED")).status_code == 200, "tightening is the operator's"
    assert (await set_state(risk, "ACTIVE")).status_code == 200
    states = await env.fetch("SELECT state, updated_by FROM trading_state WHERE scope_key = 'desk-halt'")
    assert states == [{"state": "ACTIVE", "updated_by": "risk-1"}]


# ------------------------------------------------------------------------------------------------ prod, dev


async def test_prod_needs_an_identity_source_and_closes_operational_endpoints(env: AuthEnv) -> None:
    with pytest.raises(ConfigError, match="identity source"):
        create_app(Settings(environment="prod", database_url="postgresql://unused"))
    prod = env.settings.model_copy(
        update={"environment": "prod", "auth": AuthSettings(api_keys=True), "api": ApiSettings()}
    )
    app = create_app(prod, temporal=None, pool=env.pool)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert (await http.get("/health")).status_code == 200
        for path in ("/ready", "/metrics", "/docs", "/openapi.json", "/api/v1/orders"):
            assert (await http.get(path)).status_code == 401, path
        auditor = await env.key("prom", [Role.AUDITOR], Scope.everything())
        assert (await http.get("/metrics", headers=bearer(auditor))).status_code == 200
        bridge = await env.key("ea-1", [Role.BRIDGE], Scope(accounts=["xm-in"]))
        assert (await http.get("/metrics", headers=bearer(bridge))).status_code == 403


async def test_development_mode_marks_every_answer_and_takes_x_actor(stack: Stack) -> None:
    async with stack.api() as http:
        for r in (
            await http.get("/health"),
            await http.get("/api/v1/orders/EXAAAAAAAAAAAAAAAA"),
            await http.get("/no/such/route"),
            await http.post("/api/v1/orders", json={"qty": "x"}),
        ):
            assert r.headers["X-Exodus-Auth"] == "disabled", r.url
        body = {"clientId": unique("desk"), "clientOrderId": "a1", "symbol": "MSFT", "side": "BUY", "qty": 1}
        r = await http.post("/api/v1/orders", json={**body, "price": 300, "timeInForce": "GTC"})
        order_id = r.json()["internalOrderId"]
        r = await http.post(f"/api/v1/orders/{order_id}/cancel", headers={"X-Actor": "ops-jane"})
        assert r.status_code == 202 and r.headers["X-Exodus-Auth"] == "disabled"
    audit = await stack.fetch(
        "SELECT actor FROM audit_log WHERE action = 'CANCEL_REQUESTED' AND subject = %s", order_id
    )
    assert audit == [{"actor": "ops-jane"}]


# ------------------------------------------------------------------------------------------------ orders


def _tokens(**principals: dict[str, Any]) -> ApiSettings:
    return ApiSettings(tokens={name: {"token": f"tok-{name}", **cfg} for name, cfg in principals.items()})


async def test_other_desks_live_order_is_404_for_reads_cancels_and_amends(stack: Stack) -> None:
    desk_a, desk_b = unique("desk"), unique("desk")
    settings = stack.settings.model_copy(update={"api": _tokens(**{desk_a: {}, desk_b: {}})})
    await register_accounts(stack.pool, desk_a, desk_b)
    a, b = bearer(f"tok-{desk_a}"), bearer(f"tok-{desk_b}")
    async with stack.api(settings, register_accounts=False) as http:
        body = {
            "clientId": desk_a,
            "clientOrderId": "w1",
            "symbol": "MSFT",
            "side": "BUY",
            "qty": 5,
            "price": 300,
            "timeInForce": "GTC",
        }
        r = await http.post("/api/v1/orders", json=body, headers=a)
        assert r.status_code == 201, r.text
        order_id = r.json()["internalOrderId"]
        unknown = await http.get("/api/v1/orders/EXAAAAAAAAAAAAAAAA", headers=b)
        other = await http.get(f"/api/v1/orders/{order_id}", headers=b)
        assert other.status_code == 404 and other.json()["message"] == f"no order {order_id}"
        assert unknown.json()["message"] == "no order EXAAAAAAAAAAAAAAAA"
        assert (await http.post(f"/api/v1/orders/{order_id}/cancel", headers=b)).status_code == 404
        assert (await http.patch(f"/api/v1/orders/{order_id}", json={"qty": 6}, headers=b)).status_code == 404
        listed = (await http.get("/api/v1/orders", params={"clientId": desk_a}, headers=b)).json()
        assert listed["count"] == 0
        assert (await http.get(f"/api/v1/orders/{order_id}", headers=a)).status_code == 200
        assert (await http.post(f"/api/v1/orders/{order_id}/cancel", headers=a)).status_code == 202
    denied = await stack.fetch(
        "SELECT actor FROM audit_log WHERE action = 'ACCESS_DENIED' AND detail->>'reason' = 'OUT_OF_SCOPE'"
        " AND subject LIKE %s",
        f"%{order_id}%",
    )
    assert [d["actor"] for d in denied] == [desk_b] * 3


async def test_idempotency_keys_are_namespaced_by_tenant(stack: Stack) -> None:
    shared = unique("desk")
    scope = {"clients": [shared], "accounts": [shared], "brokers": "*"}
    settings = stack.settings.model_copy(
        update={"api": _tokens(ta={"tenant": "tenant-a", "scope": scope}, tb={"tenant": "tenant-b", "scope": scope})}
    )
    await register_accounts(stack.pool, shared)
    body = {"clientId": shared, "clientOrderId": "same", "symbol": "AAPL", "side": "BUY", "type": "LIMIT", "price": 150}
    async with stack.api(settings) as http:
        a = await http.post(
            "/api/v1/orders", json={**body, "qty": 10}, headers={**bearer("tok-ta"), "X-Idempotency-Key": "k1"}
        )
        b = await http.post(
            "/api/v1/orders", json={**body, "qty": 11}, headers={**bearer("tok-tb"), "X-Idempotency-Key": "k1"}
        )
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["internalOrderId"] != b.json()["internalOrderId"]
    assert a.json()["internalOrderId"] == derive_order_id(f"tenant-a#{shared}/key/k1")
    # Development (no tenant) keeps today's key, so existing order ids do not change.
    dev_client = unique("desk")
    async with stack.api() as http:
        r = await http.post(
            "/api/v1/orders", json={**body, "clientId": dev_client, "qty": 12}, headers={"X-Idempotency-Key": "k1"}
        )
    assert r.json()["internalOrderId"] == derive_order_id(f"{dev_client}/key/k1")


async def test_unknown_account_is_refused_before_any_workflow(stack: Stack) -> None:
    account = unique("ghost")
    body = {
        "clientId": unique("desk"),
        "account": account,
        "clientOrderId": "g1",
        "symbol": "AAPL",
        "side": "BUY",
        "qty": 1,
    }
    async with stack.api(register_accounts=False) as http:
        r = await http.post("/api/v1/orders", json=body)
        assert r.status_code == 422 and r.json()["status"] == "rejected"
        assert [(x["code"], x["field"]) for x in r.json()["reasons"]] == [("UNKNOWN_ACCOUNT", "account")]
        assert await stack.fetch("SELECT 1 FROM orders WHERE account = %s", account) == []
        workflows = [w async for w in stack.client.list_workflows(f"ExodusAccount = '{account}'")]
        assert workflows == []
        await register_accounts(stack.pool, account)
        assert (await http.post("/api/v1/orders", json=body)).status_code == 201


async def test_an_account_registered_for_a_broker_takes_only_that_broker(stack: Stack) -> None:
    account = unique("acct")
    await register_accounts(stack.pool, account, broker="paper")
    body = {"clientId": account, "clientOrderId": "b1", "symbol": "AAPL", "side": "BUY", "qty": 1}
    prefers_fix = stack.settings.model_copy(update={"default_broker": "fix"})
    async with stack.api(prefers_fix, register_accounts=False) as http:
        r = await http.post("/api/v1/orders", json={**body, "broker": "fix"})
        assert r.status_code == 422
        assert [(x["code"], x["field"]) for x in r.json()["reasons"]] == [("ACCOUNT_BROKER_MISMATCH", "broker")]
        r = await http.post("/api/v1/orders", json=body)  # no broker: the account's, not the default
        assert r.status_code == 201, r.text
    rows = await stack.fetch("SELECT broker FROM orders WHERE account = %s", account)
    assert rows == [{"broker": "paper"}]


async def test_mt5_bridge_accounts_are_registered_for_mt5(stack: Stack, pool: AsyncConnectionPool) -> None:
    account = unique("xm")
    settings = stack.settings.model_copy(
        update={"mt5": Mt5Settings(accounts={account: Mt5AccountSettings(token=SecretStr("t"), login=5123)})}
    )
    assert await registered_broker(pool, settings, account=account, broker=None) == ("mt5", [])
    broker, problems = await registered_broker(pool, settings, account=account, broker="paper")
    assert [p.code for p in problems] == ["ACCOUNT_BROKER_MISMATCH"]
    await register_configured_accounts(pool, settings)
    async with pool.connection() as conn:
        record = await get_account(conn, account)
    assert record is not None and record.broker == "mt5" and record.broker_account == "5123"


async def test_bridge_api_key_reaches_only_its_own_account(env: AuthEnv) -> None:
    ea = await env.key("ea-in", [Role.BRIDGE], Scope(accounts=["xm-in"], brokers=["mt5"]))
    poll = {"protocol": 1, "terminal_id": "T1", "session_id": "S1", "max_commands": 5}
    r = await env.http.post("/api/v1/bridge/mt5/accounts/xm-in/commands/poll", json=poll, headers=bearer(ea))
    assert r.status_code in (200, 409), r.text  # authorized: the store answers (409: no heartbeat yet)
    r = await env.http.post("/api/v1/bridge/mt5/accounts/xm-out/commands/poll", json=poll, headers=bearer(ea))
    assert r.status_code == 403 and r.json()["reasons"][0]["field"] == "account"
    r = await env.http.post("/api/v1/bridge/mt5/accounts/xm-in/commands/poll", json=poll, headers=bearer("tok-xm-out"))
    assert r.status_code == 401 and "wrong bridge token" in r.json()["message"]
    assert (await env.http.get("/api/v1/orders", headers=bearer("tok-xm-in"))).status_code == 403


async def test_jwks_url_is_fetched_and_an_unreachable_provider_is_503(tmp_path: Any) -> None:
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from api.identity import AuthFailure, JwtVerifier
    from core.settings import JwtSettings
    from devstack.services import free_port

    idp = Idp.create(tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        verifier = JwtVerifier(JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=url))
        principal = await verifier.verify(idp.rs256(Idp.claims("carol", ["risk"], Scope.everything())))
        assert principal.name == "carol" and principal.roles == {Role.RISK} and principal.source == "jwt"
        with pytest.raises(AuthFailure) as refused:
            await verifier.verify(idp.rs256(Idp.claims("carol", ["risk"]), kid="rotated-away"))
        assert refused.value.status == 401 and refused.value.code == "TOKEN_KEY_UNKNOWN"
    finally:
        server.shutdown()
        server.server_close()
    down = JwtVerifier(
        JwtSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json")
    )
    with pytest.raises(AuthFailure) as unavailable:
        await down.verify(idp.rs256(Idp.claims("carol", ["risk"])))
    assert unavailable.value.status == 503 and unavailable.value.code == "JWKS_UNAVAILABLE"


async def test_make_run_registers_the_quick_start_accounts_once(database_url: str, stack: Stack) -> None:
    from devstack.__main__ import QUICKSTART_ACCOUNTS, _register_quickstart_accounts

    for _ in range(2):  # every start: an existing registration is kept as it is
        await _register_quickstart_accounts(database_url)
    rows = await stack.fetch(
        "SELECT account, broker, created_by FROM accounts WHERE account = ANY(%s)", list(QUICKSTART_ACCOUNTS)
    )
    assert sorted(r["account"] for r in rows) == ["desk-1", "desk-2"]
    assert all(r["broker"] is None and r["created_by"] == "devstack" for r in rows)
