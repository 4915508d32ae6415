"""An API with every identity source on, in its own database: API keys, JWTs (HS256 and an RS256 JWKS file).

``AuthEnv.open(...)`` builds it; ``env.key(...)`` creates a real API key, ``env.idp.hs256(...)`` and
``env.idp.rs256(...)`` sign real JWTs. Seed data is written straight into the tables.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr
from temporalio.client import Client

from api.main import create_app
from core.auth import Role, Scope
from core.instruments import InstrumentCatalog
from core.settings import AuthSettings, JwtSettings, Mt5AccountSettings, Mt5Settings, Settings
from store.auth import create_api_key
from tests.conftest import create_database, make_settings

ISSUER = "https://idp.exodus.test"
AUDIENCE = "exodus-api"
HS_SECRET = "development-only-hs256-secret-0123456789abcdef"


@dataclass
class Idp:
    """A test identity provider: an RSA key published in a JWKS file, and an HS256 secret."""

    jwks_file: Path
    private_key: Any
    kid: str = "test-key-1"

    @classmethod
    def create(cls, directory: Path) -> Idp:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        jwk.update({"kid": "test-key-1", "alg": "RS256", "use": "sig"})
        path = directory / "jwks.json"
        path.write_text(json.dumps({"keys": [jwk]}))
        return cls(path, key)

    @staticmethod
    def claims(name: str, roles: list[str], scope: Scope | None = None, **extra: Any) -> dict[str, Any]:
        now = int(time.time())
        scope = scope or Scope()
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": name,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "roles": roles,
            "exodus_clients": scope.clients,
            "exodus_accounts": scope.accounts,
            "exodus_brokers": scope.brokers,
        }
        body.update(extra)
        return body

    def rs256(self, claims: dict[str, Any], *, kid: str | None = None, key: Any = None) -> str:
        return jwt.encode(claims, key or self.private_key, algorithm="RS256", headers={"kid": kid or self.kid})

    @staticmethod
    def hs256(claims: dict[str, Any], *, secret: str = HS_SECRET) -> str:
        return jwt.encode(claims, secret, algorithm="HS256")


def auth_settings(database_url: str, temporal_address: str, idp: Idp, **auth: Any) -> Settings:
    """Settings with API keys, JWT (JWKS file and HS256), closed operational endpoints, two MT5 accounts."""
    cfg: dict[str, Any] = {
        "api_keys": True,
        "jwt": JwtSettings(
            issuer=ISSUER, audience=AUDIENCE, jwks_file=idp.jwks_file, hs256_secret=SecretStr(HS_SECRET)
        ),
        "open_ready": False,
        "open_metrics": False,
        "open_docs": False,
    }
    cfg.update(auth)
    return make_settings(
        database_url,
        temporal_address,
        auth=AuthSettings(**cfg),
        mt5=Mt5Settings(accounts={a: Mt5AccountSettings(token=f"tok-{a}") for a in ("xm-in", "xm-out")}),
    )


@dataclass
class AuthEnv:
    """The app, an HTTP client to it, its pool and identity provider."""

    settings: Settings
    pool: AsyncConnectionPool
    http: httpx.AsyncClient
    idp: Idp
    app: Any = None

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        admin_url: str,
        temporal: Client,
        temporal_address: str,
        instruments: InstrumentCatalog,
        directory: Path,
        **auth: Any,
    ) -> AsyncIterator[AuthEnv]:
        url = await create_database(admin_url, "exodus_auth")
        idp = Idp.create(directory)
        settings = auth_settings(url, temporal_address, idp, **auth)
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=5, kwargs={"autocommit": True, "row_factory": dict_row}, open=False
        )
        await pool.open(wait=True)
        try:
            app = create_app(settings, temporal=temporal, pool=pool, instruments=instruments)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://exodus.test") as http:
                yield cls(settings, pool, http, idp, app)
        finally:
            await pool.close()

    async def key(self, name: str, roles: list[Role], scope: Scope, *, tenant: str | None = None) -> str:
        """A real API key (hashed in the database); returns the key text."""
        async with self.pool.connection() as conn, conn.transaction():
            text, _ = await create_api_key(
                conn, name=name, roles=roles, scope=scope, tenant=tenant or name, actor="tests"
            )
        return text

    async def fetch(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(sql, params)  # type: ignore[arg-type]
            return await cur.fetchall()  # type: ignore[return-value]

    async def execute(self, sql: str, *params: Any) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(sql, params)  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def seed_order(env: AuthEnv, order_id: str, *, client_id: str, account: str, status: str = "FILLED") -> None:
    """A closed order in the read model (no workflow behind it)."""
    await env.execute(
        "INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id,"
        " account, symbol, side, type, time_in_force, qty, price, broker, status, filled_qty, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 'AAPL', 'BUY', 'LIMIT', 'GTC', 10, 190, 'paper', %s, 10, now(), now())",
        order_id,
        f"order-{order_id}",
        f"seed/{order_id}",
        uuid.uuid4().hex,
        client_id,
        f"co-{order_id}",
        account,
        status,
    )


async def seed_list(env: AuthEnv, list_id_key: str, *, client_id: str, account: str) -> str:
    """A closed bracket in the lists' read model (no workflow behind it); returns its list id."""
    from datetime import UTC, datetime
    from decimal import Decimal

    from core.contingency import Contingency, LegRole
    from core.domain import OrderStatus
    from core.orderlist import LegSpec, ListBook, ListStatus, OrderListRequest, derive_list_id, leg_order_id
    from store.order_lists import write_list
    from tests.harness import make_order

    list_id = derive_list_id(list_id_key)
    legs = [
        ("entry", LegRole.PARENT, {"type": "LIMIT", "price": "190"}),
        ("tp", LegRole.EXIT, {"side": "SELL", "type": "LIMIT", "price": "200", "reduce_only": True}),
        ("sl", LegRole.EXIT, {"side": "SELL", "type": "STOP", "stop_price": "180", "reduce_only": True}),
    ]
    specs = [
        LegSpec(
            name=name,
            role=role,
            order=make_order(client_id=client_id, account=account, **terms).model_copy(
                update={"order_id": leg_order_id(list_id_key, name), "idempotency_key": f"{list_id_key}#{name}"}
            ),
        )
        for name, role, terms in legs
    ]
    request = OrderListRequest(
        list_id=list_id,
        idempotency_key=list_id_key,
        request_hash=uuid.uuid4().hex,
        client_id=client_id,
        client_list_id=list_id_key,
        received_at=datetime.now(UTC),
        submission_id=uuid.uuid4().hex,
        contingency=Contingency.BRACKET,
        legs=specs,
    )
    book = ListBook.new(request)
    for leg, status in zip(book.legs, (OrderStatus.FILLED, OrderStatus.FILLED, OrderStatus.CANCELED), strict=True):
        leg.released, leg.status = True, status
        leg.filled_qty = leg.qty if status is OrderStatus.FILLED else Decimal(0)
    book.status = ListStatus.DONE
    async with env.pool.connection() as conn:
        await write_list(
            conn,
            list_id=list_id,
            workflow_id=f"list-{list_id}",
            client_id=client_id,
            client_list_id=list_id_key,
            account=account,
            broker="paper",
            contingency="BRACKET",
            status="DONE",
            version=1,
            book=book.model_dump(mode="json"),
        )
    return list_id
