"""Credentials to principals: API keys, JWT bearer tokens, development tokens and MT5 bridge tokens.

``Authenticator.resolve`` takes the credential of an ``Authorization: Bearer`` header and returns the
``Principal`` it proves, or raises ``AuthFailure`` with a stable code, a message for the caller and the name
the caller presented (for the audit log; never the secret). The shape of the credential picks the source:
``exo_...`` is an API key, three dot-separated parts a JWT, anything else a development or bridge token.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any

import jwt
from pydantic import TypeAdapter

from core.auth import API_KEY_PREFIX, Principal, Role, Scope, Tenant, parse_api_key, secret_matches
from core.errors import ConfigError
from core.settings import JwtSettings, Settings
from store import Pool
from store.auth import find_api_key

__all__ = ["AuthFailure", "Authenticator", "JwtVerifier"]

log = logging.getLogger(__name__)

_TENANT: TypeAdapter[str] = TypeAdapter(Tenant)


class AuthFailure(Exception):
    """Authentication or authorization refused: HTTP status, stable code, message, presented name."""

    def __init__(
        self, status: int, code: str, message: str, *, presented: str = "anonymous", field: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.presented = presented
        self.field = field


def _unauthorized(code: str, message: str, presented: str) -> AuthFailure:
    return AuthFailure(401, code, message, presented=presented, field="Authorization")


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _names(value: Any) -> Any:
    # A claim holding names: a list, a space/comma-separated string, or "*".
    if value is None:
        return []
    return value


class JwtVerifier:
    """Verifies JWTs against the configured issuer, audience and keys (a JWKS file or URL, or an HS256 secret)."""

    def __init__(self, cfg: JwtSettings) -> None:
        """Load the key set file now (a broken file fails start-up); a JWKS URL is fetched on first use."""
        self.cfg = cfg
        self._keys: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if cfg.jwks_file is not None:
            try:
                self._keys = jwt.PyJWKSet.from_dict(json.loads(cfg.jwks_file.read_text()))
            except (OSError, ValueError, jwt.PyJWKSetError) as e:
                raise ConfigError(f"auth.jwt.jwks_file {cfg.jwks_file}: cannot load a key set ({e})") from e
        elif cfg.jwks_url:
            self._client = jwt.PyJWKClient(
                cfg.jwks_url, cache_keys=True, lifespan=max(cfg.jwks_cache_seconds, 1), timeout=5
            )

    async def _key(self, token: str, kid: str | None, alg: str, presented: str) -> Any:
        if self._client is not None:
            try:
                signing = await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
            except jwt.PyJWKClientConnectionError as e:
                message = "the identity provider's key set cannot be fetched; retry"
                raise AuthFailure(503, "JWKS_UNAVAILABLE", message, presented=presented) from e
            except (jwt.PyJWKClientError, jwt.DecodeError) as e:
                raise _unauthorized("TOKEN_KEY_UNKNOWN", f"no signing key {kid!r} in the key set", presented) from e
            return signing.key
        if self._keys is None:
            raise _unauthorized("TOKEN_ALGORITHM", f"algorithm {alg} is not accepted (no key set)", presented)
        candidates = [k for k in self._keys.keys if kid is None or k.key_id == kid]
        if kid is None and len(candidates) != 1:
            raise _unauthorized("TOKEN_KEY_UNKNOWN", "the token names no key id (kid)", presented)
        if not candidates:
            raise _unauthorized("TOKEN_KEY_UNKNOWN", f"no signing key {kid!r} in the key set", presented)
        # HS* never reaches here (only the configured secret verifies HS256), so a public key cannot be
        # abused as an HMAC secret; the asymmetric algorithms are the configured ones.
        return candidates[0].key

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; ``AuthFailure`` (401, with the reason) otherwise."""
        cfg = self.cfg
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise _unauthorized("TOKEN_MALFORMED", "malformed JWT", "unknown") from e
        presented = str(_claim(unverified, cfg.name_claim) or "unknown")
        alg = str(header.get("alg", ""))
        if alg == "HS256":
            if cfg.hs256_secret is None:
                raise _unauthorized("TOKEN_ALGORITHM", "algorithm HS256 is not accepted", presented)
            key: Any = cfg.hs256_secret.get_secret_value()
        elif alg in cfg.algorithms:
            key = await self._key(token, header.get("kid"), alg, presented)
        else:
            raise _unauthorized("TOKEN_ALGORITHM", f"algorithm {alg or 'none'} is not accepted", presented)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise _unauthorized("TOKEN_EXPIRED", "token expired", presented) from e
        except (jwt.ImmatureSignatureError, jwt.InvalidIssuedAtError) as e:
            raise _unauthorized("TOKEN_NOT_YET_VALID", f"token not yet valid ({e})", presented) from e
        except jwt.InvalidAudienceError as e:
            raise _unauthorized("TOKEN_AUDIENCE", f"wrong audience (expected {cfg.audience})", presented) from e
        except jwt.InvalidIssuerError as e:
            raise _unauthorized("TOKEN_ISSUER", f"wrong issuer (expected {cfg.issuer})", presented) from e
        except jwt.InvalidSignatureError as e:
            raise _unauthorized("TOKEN_SIGNATURE", "bad signature", presented) from e
        except jwt.MissingRequiredClaimError as e:
            raise _unauthorized("TOKEN_CLAIMS", f"missing claim {e.claim!r}", presented) from e
        except jwt.PyJWTError as e:
            raise _unauthorized("TOKEN_INVALID", f"invalid token ({type(e).__name__})", presented) from e
        return self._principal(claims, presented)

    def _principal(self, claims: dict[str, Any], presented: str) -> Principal:
        cfg = self.cfg
        name = _claim(claims, cfg.name_claim)
        if not isinstance(name, str) or not name.strip():
            raise _unauthorized("TOKEN_CLAIMS", f"missing claim {cfg.name_claim!r}", presented)
        raw_roles = _claim(claims, cfg.roles_claim)
        if isinstance(raw_roles, str):
            raw_roles = raw_roles.replace(",", " ").split()
        known = {r.value for r in Role}
        roles = frozenset(Role(r) for r in (raw_roles or []) if isinstance(r, str) and r in known)
        tenant = _claim(claims, cfg.tenant_claim) or name
        try:
            scope = Scope(
                clients=_names(_claim(claims, cfg.clients_claim)),
                accounts=_names(_claim(claims, cfg.accounts_claim)),
                brokers=_names(_claim(claims, cfg.brokers_claim)),
            )
            tenant = _TENANT.validate_python(tenant)
        except ValueError as e:
            raise _unauthorized("TOKEN_CLAIMS", "scope or tenant claims are not valid names", presented) from e
        return Principal(name=name.strip()[:128], roles=roles, scope=scope, tenant=tenant, source="jwt")


class Authenticator:
    """Every identity source of one API process."""

    def __init__(self, settings: Settings) -> None:
        """Build the verifiers from the settings (a bad JWT key set file fails here)."""
        self.settings = settings
        self.api_keys = settings.auth.api_keys
        self.jwt = JwtVerifier(settings.auth.jwt) if settings.auth.jwt.enabled else None
        self._tokens = [
            (
                entry.token.get_secret_value().encode(),
                Principal(
                    name=name,
                    roles=frozenset(entry.roles),
                    scope=entry.scope or Scope(),
                    tenant=entry.tenant or name,
                    source="token",
                ),
            )
            for name, entry in settings.api.tokens.items()
        ]
        self._bridge = {a: cfg.token.get_secret_value().encode() for a, cfg in settings.mt5.accounts.items()}

    @property
    def disabled(self) -> bool:
        """No identity source: development mode, every caller is the development principal."""
        return not self.settings.identity_sources()

    @staticmethod
    def bridge_principal(account: str) -> Principal:
        """The principal of an MT5 account's bridge token: role bridge, that account only."""
        return Principal(
            name=f"mt5-bridge:{account}",
            roles=frozenset({Role.BRIDGE}),
            scope=Scope(accounts=[account], brokers=["mt5"]),
            tenant=f"mt5-bridge:{account}",
            source="bridge",
        )

    def bridge_token_matches(self, account: str, token: str) -> bool:
        """Whether ``token`` is the configured bridge token of ``account`` (constant time)."""
        expected = self._bridge.get(account)
        return expected is not None and hmac.compare_digest(token.encode(), expected)

    async def resolve(self, credential: str, pool: Pool | None) -> Principal:
        """The principal a bearer credential proves, or ``AuthFailure``."""
        if credential.startswith(API_KEY_PREFIX):
            return await self._api_key(credential, pool)
        if self.jwt is not None and credential.count(".") == 2:
            return await self.jwt.verify(credential)
        found: Principal | None = None
        presented = credential.encode()
        for expected, principal in self._tokens:
            if hmac.compare_digest(presented, expected):  # every entry is compared: no early exit
                found = principal
        for account, expected in self._bridge.items():
            if hmac.compare_digest(presented, expected):
                found = self.bridge_principal(account)
        if found is None:
            raise _unauthorized("TOKEN_UNKNOWN", "unknown or invalid bearer token", "unknown")
        return found

    async def _api_key(self, credential: str, pool: Pool | None) -> Principal:
        parts = parse_api_key(credential)
        if parts is None:
            raise _unauthorized("KEY_MALFORMED", "malformed API key", "unknown")
        presented = f"key:{parts.key_id}"
        if not self.api_keys or pool is None:
            raise _unauthorized(
                "KEY_DISABLED", "API keys are not accepted by this server (EXODUS_AUTH__API_KEYS)", presented
            )
        async with pool.connection() as conn:
            record = await find_api_key(conn, parts.key_id)
        if record is None:
            raise _unauthorized("KEY_UNKNOWN", f"unknown API key {parts.key_id}", presented)
        presented = f"{record.name} (key {record.key_id})"
        if not secret_matches(parts.secret, record.secret_hash):
            raise _unauthorized("KEY_WRONG", f"wrong secret for API key {record.key_id}", presented)
        if record.revoked_at is not None:
            raise _unauthorized("KEY_REVOKED", f"API key {record.key_id} was revoked", presented)
        if not record.active():
            raise _unauthorized("KEY_EXPIRED", f"API key {record.key_id} expired", presented)
        return record.principal()
