"""Roles, permissions, scopes, API key format, tenant namespaces and the security checks of the settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from core.auth import (
    ALL,
    ROLE_PERMISSIONS,
    Permission,
    Role,
    Scope,
    dev_principal,
    generate_api_key,
    hash_secret,
    namespaced_key,
    parse_api_key,
    secret_matches,
)
from core.errors import ConfigError
from core.settings import ApiSettings, AuthSettings, JwtSettings, Settings

P = Permission


def test_role_table_is_the_one_in_the_readme() -> None:
    # The table: trader trades and reads inside its scope; operator reads, cancels any order,
    # cancel-all, HALTED/REDUCING; risk owns the policy and every trading state; auditor reads everything;
    # bridge reaches the MT5 bridge; admin manages keys and accounts. Every role but bridge may read the
    # operational endpoints and the accounts of its scope.
    expected = {
        Role.TRADER: {P.ORDERS_READ, P.ORDERS_SUBMIT, P.ORDERS_AMEND, P.ORDERS_CANCEL},
        Role.OPERATOR: {
            P.ORDERS_READ,
            P.ORDERS_CANCEL,
            P.ORDERS_CANCEL_ALL,
            P.TRADING_STATE_READ,
            P.TRADING_STATE_RESTRICT,
        },
        Role.RISK: {P.RISK_READ, P.RISK_WRITE, P.TRADING_STATE_READ, P.TRADING_STATE_RESTRICT, P.TRADING_STATE_LIFT},
        Role.AUDITOR: {P.ORDERS_READ, P.TRADING_STATE_READ, P.RISK_READ, P.AUDIT_READ, P.KEYS_READ},
        Role.BRIDGE: {P.BRIDGE_MT5},
        Role.ADMIN: {P.KEYS_READ, P.KEYS_MANAGE, P.ACCOUNTS_MANAGE},
    }
    for role in (Role.TRADER, Role.OPERATOR, Role.RISK, Role.AUDITOR):
        expected[role] |= {P.MARKET_DATA_READ, P.BREAKS_READ}  # the quotes risk prices with; breaks in scope
    for role in (Role.OPERATOR, Role.RISK):
        expected[role] |= {P.BREAKS_RESOLVE}
    for role, permissions in expected.items():
        if role is not Role.BRIDGE:
            permissions |= {P.ACCOUNTS_READ, P.SYSTEM_READ}
        assert ROLE_PERMISSIONS[role] == permissions, role
    # Only risk lifts a halt; nobody but the auditor reads the audit log; nobody but bridge reaches the bridge.
    assert [r for r in Role if P.TRADING_STATE_LIFT in ROLE_PERMISSIONS[r]] == [Role.RISK]
    assert [r for r in Role if P.AUDIT_READ in ROLE_PERMISSIONS[r]] == [Role.AUDITOR]
    assert [r for r in Role if P.BRIDGE_MT5 in ROLE_PERMISSIONS[r]] == [Role.BRIDGE]
    assert [r for r in Role if P.BREAKS_RESOLVE in ROLE_PERMISSIONS[r]] == [Role.OPERATOR, Role.RISK]


def test_scope_dimensions_are_lists_or_an_explicit_all() -> None:
    scope = Scope(clients="desk-a, desk-b", accounts=["*"], brokers=[])
    assert scope.clients == ["desk-a", "desk-b"] and scope.accounts == ALL and scope.brokers == []
    assert scope.allows_client("desk-a") and not scope.allows_client("desk-c")
    assert scope.allows_account("anything") and not scope.allows_broker("paper")
    assert not Scope().allows_client("x"), "an empty scope allows nothing"
    assert Scope.everything().firm_wide and not scope.firm_wide
    with pytest.raises(ValidationError):
        Scope(clients=["has space"])
    with pytest.raises(ValidationError):
        Scope(clients=["a'; DROP TABLE orders; --"])


def test_scope_covers() -> None:
    desk = Scope(clients=["a"], accounts=["a", "b"], brokers=ALL)
    assert desk.covers(Scope(clients=["a"], accounts=["b"], brokers=["paper"]))
    assert not desk.covers(Scope(clients=["a"], accounts=ALL, brokers=ALL))
    assert not desk.covers(Scope(clients=["z"], accounts=["a"], brokers=ALL))
    assert Scope.everything().covers(desk) and not Scope(brokers=["paper"]).covers(Scope(brokers=ALL))


def test_api_keys_round_trip_and_only_the_hash_is_kept() -> None:
    text, parts = generate_api_key()
    assert text.startswith("exo_") and parse_api_key(text) == parts
    assert parts.secret not in hash_secret(parts.secret) and secret_matches(parts.secret, hash_secret(parts.secret))
    assert not secret_matches(parts.secret[:-1] + ("A" if parts.secret[-1] != "A" else "B"), hash_secret(parts.secret))
    other, _ = generate_api_key()
    assert other != text
    for bad in ("", "exo_", "exo_short_x", "nope_" + text[4:], text + "!", text.replace("_", "-", 1)):
        assert parse_api_key(bad) is None, bad


def test_tenants_namespace_idempotency_keys() -> None:
    assert namespaced_key("", "desk-1/key/abc") == "desk-1/key/abc", "development keeps today's key"
    assert namespaced_key("t1", "desk-1/key/abc") != namespaced_key("t2", "desk-1/key/abc")
    # "#" is in no tenant and no client id, so no namespaced key equals another tenant's or a bare one.
    assert namespaced_key("t1", "c/key/x") == "t1#c/key/x"


def test_development_principal_has_every_role_and_scope() -> None:
    dev = dev_principal("ops-jane")
    assert dev.name == "ops-jane" and dev.roles == frozenset(Role) and dev.scope.firm_wide and dev.tenant == ""
    assert dev_principal().name == "anonymous"


def test_the_development_principal_is_built_once_per_name_and_cannot_change() -> None:
    # Every request of a development API asks for it: one frozen principal per name is shared between requests.
    assert dev_principal("ops-jane") is dev_principal("ops-jane")
    assert dev_principal() is dev_principal(None) is dev_principal("anonymous")
    assert dev_principal("ops-joe").name == "ops-joe"
    shared = dev_principal("ops-jane")
    with pytest.raises(ValidationError):
        shared.name = "someone-else"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        shared.scope.clients = ["desk-1"]  # type: ignore[misc]
    assert shared.roles == frozenset(Role) and shared.scope == Scope.everything()


def test_plain_tokens_are_traders_for_their_own_name() -> None:
    api = ApiSettings(tokens={"desk-a": SecretStr("s1"), "ops": {"token": "s2", "roles": ["operator"], "tenant": "t"}})
    desk = api.tokens["desk-a"]
    assert desk.roles == [Role.TRADER] and desk.tenant == "desk-a"
    assert desk.scope == Scope(clients=["desk-a"], accounts=["desk-a"], brokers=ALL)
    assert api.tokens["ops"].roles == [Role.OPERATOR] and api.tokens["ops"].tenant == "t"


def _jwt() -> JwtSettings:
    return JwtSettings(issuer="https://idp", audience="exodus", jwks_url="https://idp/jwks")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(environment="prod"), "prod needs an identity source"),
        (Settings(environment="prod", api=ApiSettings(tokens={"a": SecretStr("s")})), "EXODUS_API__TOKENS"),
        (
            Settings(
                environment="prod",
                auth=AuthSettings(
                    jwt=JwtSettings(issuer="i", audience="a", hs256_secret=SecretStr("s")),
                ),
            ),
            "HS256",
        ),
        (Settings(api=ApiSettings(host="0.0.0.0")), "binds only to 127.0.0.1"),
    ],
)
def test_the_api_refuses_to_serve_unauthenticated_where_it_must_not(settings: Settings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings.check_api_security()


def test_identity_sources_allow_prod_and_any_bind() -> None:
    Settings(environment="prod", auth=AuthSettings(api_keys=True), api=ApiSettings(host="0.0.0.0")).check_api_security()
    Settings(environment="prod", auth=AuthSettings(jwt=_jwt())).check_api_security()
    Settings(api=ApiSettings(host="::1")).check_api_security()
    Settings(api=ApiSettings(host="localhost")).check_api_security()


def test_operational_endpoints_are_open_in_dev_and_closed_in_prod_unless_set() -> None:
    dev, prod = Settings(), Settings(environment="prod", auth=AuthSettings(api_keys=True))
    assert all(dev.endpoint_open(w) for w in ("ready", "metrics", "docs"))
    assert not any(prod.endpoint_open(w) for w in ("ready", "metrics", "docs"))
    opened = Settings(environment="prod", auth=AuthSettings(api_keys=True, open_metrics=True))
    assert opened.endpoint_open("metrics") and not opened.endpoint_open("docs")


def test_jwt_needs_issuer_and_audience() -> None:
    with pytest.raises(ConfigError, match="issuer and audience"):
        Settings(auth=AuthSettings(jwt=JwtSettings(jwks_url="https://idp/jwks")))
