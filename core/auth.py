"""Who may do what: roles, the permissions each grants, scopes, the principal, and the API key format.

Every caller of the API is a ``Principal``: a name, one or more ``Role``s, a ``Scope`` (the client ids,
accounts and brokers it may act for, each a list of names or ``"*"`` for all) and a tenant (the namespace
of its idempotency keys). Principals come from API keys (hashed in Postgres), JWT bearer tokens, the
development token list, or the MT5 bridge tokens; the API maps each to this one model.

``ROLE_PERMISSIONS`` is the one table of what each role may do; routes ask for a ``Permission``, never for
a role, so the table is the only place to read or change it.

=========  ====================================================================================
role       may
=========  ====================================================================================
trader     submit, amend and cancel orders; read orders, fills and positions (inside its scope)
operator   what a trader may read; cancel any order; cancel-all; set HALTED or REDUCING
risk       read and change the risk policy; set any trading state (ACTIVE too); reset breakers
auditor    read everything (audit log, keys, accounts, policy); change nothing
bridge     the MT5 bridge endpoints of its own account (the EA)
admin      manage API keys and the accounts registry
=========  ====================================================================================

Scope narrows every role: reads are filtered to it and actions outside it are refused. Firm-wide controls
(a GLOBAL or SYMBOL trading state, the global policy, the audit log) need a scope of ``"*"`` for clients and
accounts.

API keys look like ``exo_<key id>_<secret>``: the key id is public (it names the key in listings and logs);
the secret is 256 random bits, stored only as its SHA-256 (a slow hash adds nothing to a random secret of
this size) and compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = [
    "ALL",
    "API_KEY_PREFIX",
    "ROLE_PERMISSIONS",
    "ApiKeyParts",
    "Name",
    "Permission",
    "Principal",
    "Role",
    "Scope",
    "Tenant",
    "dev_principal",
    "generate_api_key",
    "hash_secret",
    "namespaced_key",
    "parse_api_key",
    "permissions_of",
    "roles_granting",
    "secret_matches",
]

#: "every name": a scope dimension that is not a list.
ALL: Literal["*"] = "*"

#: A client id, account, broker or principal name (the same alphabet as the API's identifiers).
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@/\-]+$")
]
#: A tenant: printable, without "#" (the separator ``namespaced_key`` puts after it) or whitespace.
Tenant = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[^#\s]+$")]


class Role(StrEnum):
    """What a principal is for; a principal may hold several."""

    TRADER = "trader"
    OPERATOR = "operator"
    RISK = "risk"
    AUDITOR = "auditor"
    BRIDGE = "bridge"
    ADMIN = "admin"


class Permission(StrEnum):
    """One thing a route may require. Routes declare permissions; roles grant them (``ROLE_PERMISSIONS``)."""

    ORDERS_READ = "orders:read"
    ORDERS_SUBMIT = "orders:submit"
    ORDERS_AMEND = "orders:amend"
    ORDERS_CANCEL = "orders:cancel"
    ORDERS_CANCEL_ALL = "orders:cancel-all"
    TRADING_STATE_READ = "trading-state:read"
    #: Set HALTED or REDUCING (tighten).
    TRADING_STATE_RESTRICT = "trading-state:restrict"
    #: Set ACTIVE, reset a circuit breaker, or move HALTED to REDUCING (loosen).
    TRADING_STATE_LIFT = "trading-state:lift"
    RISK_READ = "risk:read"
    RISK_WRITE = "risk:write"
    AUDIT_READ = "audit:read"
    KEYS_READ = "keys:read"
    KEYS_MANAGE = "keys:manage"
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_MANAGE = "accounts:manage"
    BRIDGE_MT5 = "bridge:mt5"
    #: The quotes risk prices orders with (market data is not per desk: no scope applies).
    MARKET_DATA_READ = "market-data:read"
    #: Reconciliation breaks and unmatched reports (in scope; unmatched reports are firm-wide).
    BREAKS_READ = "breaks:read"
    #: Mark a break or an unmatched report resolved, with a reason (audited).
    BREAKS_RESOLVE = "breaks:resolve"
    #: /ready, /metrics, /docs and /openapi.json when they are closed.
    SYSTEM_READ = "system:read"


_P = Permission

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.TRADER: frozenset(
        {
            _P.ORDERS_READ,
            _P.ORDERS_SUBMIT,
            _P.ORDERS_AMEND,
            _P.ORDERS_CANCEL,
            _P.ACCOUNTS_READ,
            _P.MARKET_DATA_READ,
            _P.SYSTEM_READ,
            _P.BREAKS_READ,
        }
    ),
    Role.OPERATOR: frozenset(
        {
            _P.ORDERS_READ,
            _P.ORDERS_CANCEL,
            _P.ORDERS_CANCEL_ALL,
            _P.TRADING_STATE_READ,
            _P.TRADING_STATE_RESTRICT,
            _P.ACCOUNTS_READ,
            _P.MARKET_DATA_READ,
            _P.SYSTEM_READ,
            _P.BREAKS_READ,
            _P.BREAKS_RESOLVE,
        }
    ),
    Role.RISK: frozenset(
        {
            _P.RISK_READ,
            _P.RISK_WRITE,
            _P.TRADING_STATE_READ,
            _P.TRADING_STATE_RESTRICT,
            _P.TRADING_STATE_LIFT,
            _P.ACCOUNTS_READ,
            _P.MARKET_DATA_READ,
            _P.SYSTEM_READ,
            _P.BREAKS_READ,
            _P.BREAKS_RESOLVE,
        }
    ),
    Role.AUDITOR: frozenset(
        {
            _P.ORDERS_READ,
            _P.TRADING_STATE_READ,
            _P.RISK_READ,
            _P.AUDIT_READ,
            _P.KEYS_READ,
            _P.ACCOUNTS_READ,
            _P.MARKET_DATA_READ,
            _P.SYSTEM_READ,
            _P.BREAKS_READ,
        }
    ),
    Role.BRIDGE: frozenset({_P.BRIDGE_MT5}),
    Role.ADMIN: frozenset({_P.KEYS_READ, _P.KEYS_MANAGE, _P.ACCOUNTS_READ, _P.ACCOUNTS_MANAGE, _P.SYSTEM_READ}),
}


def permissions_of(roles: frozenset[Role] | set[Role]) -> frozenset[Permission]:
    """Every permission the roles grant together."""
    return _granted(frozenset(roles))


@lru_cache(maxsize=256)
def _granted(roles: frozenset[Role]) -> frozenset[Permission]:
    # Every access rule asks (twice a request: the edge guard and the route's rule); the role table never changes.
    granted: set[Permission] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS[role]
    return frozenset(granted)


def roles_granting(permission: Permission) -> list[Role]:
    """The roles that grant ``permission`` (for error messages and documentation)."""
    return [role for role in Role if permission in ROLE_PERMISSIONS[role]]


Dimension = Literal["*"] | list[Name]


class Scope(BaseModel):
    """The client ids, accounts and brokers a principal may act for: each a list of names, or ``"*"`` for all.

    An empty list means none. ``["*"]`` is read as ``"*"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: Dimension = []
    accounts: Dimension = []
    brokers: Dimension = []

    @field_validator("clients", "accounts", "brokers", mode="before")
    @classmethod
    def _normalize(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [v for v in re.split(r"[\s,]+", value) if v]
        if isinstance(value, (list, tuple, set, frozenset)):
            items = [str(v).strip() for v in value]
            if ALL in items:
                return ALL
            return sorted(set(items))
        return value

    @classmethod
    def everything(cls) -> Scope:
        """Every client, account and broker."""
        return cls(clients=ALL, accounts=ALL, brokers=ALL)

    @staticmethod
    def _has(dimension: Dimension, name: str | None) -> bool:
        return dimension == ALL or (name is not None and name in dimension)

    def allows_client(self, client_id: str | None) -> bool:
        """Whether the client id is inside the scope."""
        return self._has(self.clients, client_id)

    def allows_account(self, account: str | None) -> bool:
        """Whether the account is inside the scope."""
        return self._has(self.accounts, account)

    def allows_broker(self, broker: str | None) -> bool:
        """Whether the broker is inside the scope."""
        return self._has(self.brokers, broker)

    def sees_order(self, *, client_id: str, account: str, broker: str) -> bool:
        """Whether an order of this client, account and broker is inside the scope."""
        return self.allows_client(client_id) and self.allows_account(account) and self.allows_broker(broker)

    @property
    def firm_wide(self) -> bool:
        """Every client and account (the scope that firm-wide controls need)."""
        return self.clients == ALL and self.accounts == ALL

    def covers(self, other: Scope) -> bool:
        """Whether every name ``other`` allows is allowed here (an admin grants only what it holds)."""
        for mine, theirs in ((self.clients, other.clients), (self.accounts, other.accounts)):
            if mine == ALL:
                continue
            if theirs == ALL or not set(theirs) <= set(mine):
                return False
        if self.brokers != ALL and (other.brokers == ALL or not set(other.brokers) <= set(self.brokers)):
            return False
        return True

    def describe(self) -> str:
        """``clients=a,b accounts=* brokers=paper``."""

        def one(value: Dimension) -> str:
            return ALL if value == ALL else (",".join(value) or "-")

        return f"clients={one(self.clients)} accounts={one(self.accounts)} brokers={one(self.brokers)}"


class Principal(BaseModel):
    """An authenticated caller: who it is, what it may do, what for, and its idempotency namespace."""

    model_config = ConfigDict(frozen=True)

    name: str
    roles: frozenset[Role]
    scope: Scope
    #: Namespace of the principal's idempotency keys ("" in development keeps today's order ids).
    tenant: str = ""
    #: Where the identity came from: dev (no authentication), token, api-key, jwt, bridge.
    source: Literal["dev", "token", "api-key", "jwt", "bridge"]
    #: The API key id, for principals from API keys.
    key_id: str | None = None

    @property
    def permissions(self) -> frozenset[Permission]:
        """Every permission the principal's roles grant."""
        return permissions_of(self.roles)

    def can(self, permission: Permission) -> bool:
        """Whether one of the principal's roles grants ``permission``."""
        return permission in self.permissions

    def roles_text(self) -> str:
        """``operator, risk`` (sorted)."""
        return ", ".join(sorted(r.value for r in self.roles)) or "none"


def namespaced_key(tenant: str, key: str) -> str:
    """The idempotency key of an order in a tenant's namespace (the key itself when the tenant is empty).

    ``#`` cannot occur in a tenant or a client id, so keys of two tenants (or a tenant's and an
    un-namespaced one) can never be equal.
    """
    return f"{tenant}#{key}" if tenant else key


def dev_principal(actor: str | None = None) -> Principal:
    """The development principal (no identity source configured): every role, every scope, no tenant.

    One frozen principal per name, built once: every request of a development API asks for one, and building it
    (its scope's validators, its roles) cost as much as the rest of authentication.
    """
    return _dev_principal(actor or "anonymous")


@lru_cache(maxsize=1024)
def _dev_principal(name: str) -> Principal:
    return Principal(name=name, roles=frozenset(Role), scope=Scope.everything(), tenant="", source="dev")


# ------------------------------------------------------------------------------------------------ API keys

API_KEY_PREFIX = "exo_"
_KEY_ID = re.compile(r"^[a-z2-7]{12}$")
_SECRET = re.compile(r"^[A-Za-z0-9_\-]{43}$")


class ApiKeyParts(BaseModel):
    """An API key split into its public id and its secret."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    secret: str = Field(repr=False)


def generate_api_key() -> tuple[str, ApiKeyParts]:
    """A new random key: the text to hand out (once) and its parts."""
    key_id = base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}{key_id}_{secret}", ApiKeyParts(key_id=key_id, secret=secret)


def parse_api_key(text: str) -> ApiKeyParts | None:
    """The parts of a well-formed key, else None."""
    if not text.startswith(API_KEY_PREFIX):
        return None
    key_id, sep, secret = text[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not _KEY_ID.match(key_id) or not _SECRET.match(secret):
        return None
    return ApiKeyParts(key_id=key_id, secret=secret)


def hash_secret(secret: str) -> str:
    """What is stored for a secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret).encode(), stored_hash.encode())
