"""Session fixtures: a real Temporal dev server, a time-skipping test server, a real Postgres, a running stack.

Everything listens on free ports and lives in pytest's temporary directories, so a test run works while
``make run`` is up and two runs never share state. With ``DATABASE_URL`` set, the tests create (and drop)
their own database on that server instead of starting an embedded one.

``--workflow-environment`` picks the Temporal server: ``local`` (default: start a dev server) or the
``host:port`` of a running one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg_pool import AsyncConnectionPool
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from core.db import app_role_configure, apply_migrations
from core.domain import InstrumentClass
from core.instruments import InstrumentCatalog
from core.risk import ClassLimits, RiskPolicy
from core.settings import (
    AuditSettings,
    MarketDataSettings,
    OrderSettings,
    PaperSettings,
    Settings,
    TemporalSettings,
    WorkerSettings,
)
from core.temporal import SEARCH_ATTRIBUTES
from devstack.services import (
    DEV_SERVER_FLAGS,
    EmbeddedPostgres,
    PortReservation,
    temporal_binary,
    test_server_binary,
)
from tests.harness import Stack, paper_broker, static_instruments


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--workflow-environment",
        default="local",
        help="'local' to start a Temporal dev server, or host:port of a running server",
    )


# ------------------------------------------------------------------------------------------------ ports


@pytest.fixture
def reserve_port() -> Iterator[Callable[[], int]]:
    """Reserves ports until the test ends (``PortReservation``): the server the test starts binds them, and no other
    process takes them meanwhile (a port merely found free may be taken before a slow start-up binds it)."""
    held: list[PortReservation] = []

    def reserve() -> int:
        held.append(PortReservation())
        return held[-1].port

    yield reserve
    for reservation in held:
        reservation.close()


# ------------------------------------------------------------------------------------------------ Postgres


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Postgres server the tests may create databases on."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    # Not under pytest's tmp dir: pytest resets /tmp/pytest-of-<user> to 0700 whenever another session starts,
    # which locks out the unprivileged user the embedded Postgres runs as when tests run as root.
    base = Path(tempfile.mkdtemp(prefix="exodus-test-pg-"))
    server = EmbeddedPostgres(base / "data", delete_on_exit=True)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    # psycopg understands both URL and key=value forms through conninfo_to_dict.
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)  # type: ignore[arg-type]


async def create_database(admin_url: str, prefix: str = "exodus_test") -> str:
    """Create an empty, migrated database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_database(admin_url, name)
    await apply_migrations(url)
    return url


@pytest.fixture(scope="session")
async def database_url(postgres_admin_url: str) -> str:
    """A fresh migrated database for this test session."""
    return await create_database(postgres_admin_url)


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    from psycopg.rows import dict_row

    # As the application role, like core.db.open_pool: the suite runs with the privileges production has.
    p = AsyncConnectionPool(
        database_url,
        min_size=1,
        max_size=20,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=app_role_configure("exodus_app"),
        open=False,
    )
    await p.open(wait=True)
    yield p
    await p.close()


# ------------------------------------------------------------------------------------------------ Temporal


#: How long a Temporal server may take to answer after it was started (the SDK's default, 5 s, is short for a
#: loaded machine: every test that needs the server would fail).
SERVER_STARTUP = timedelta(seconds=60)


async def _started(start: Callable[[], Awaitable[WorkflowEnvironment]], tries: int = 3) -> WorkflowEnvironment:
    """``start()``, again if the server did not come up: besides its own port (which the SDK keeps from other
    processes) it listens on ports it picks for itself, and another process may take one of them first."""
    for attempt in range(1, tries + 1):
        try:
            return await start()
        except RuntimeError:
            if attempt == tries:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
async def temporal_env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    """A Temporal dev server with Exodus' search attributes (or a connection to an existing server)."""
    target = request.config.getoption("--workflow-environment")
    if target == "local":
        env = await _started(
            lambda: WorkflowEnvironment.start_local(
                dev_server_existing_path=temporal_binary(),
                data_converter=pydantic_data_converter,
                search_attributes=SEARCH_ATTRIBUTES,
                dev_server_extra_args=DEV_SERVER_FLAGS,
                dev_server_startup_timeout=SERVER_STARTUP,
            )
        )
    else:
        env = WorkflowEnvironment.from_client(await Client.connect(target, data_converter=pydantic_data_converter))
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (for long timers such as GTD expiry)."""
    env = await _started(
        lambda: WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=test_server_binary(),
            data_converter=pydantic_data_converter,
            test_server_startup_timeout=SERVER_STARTUP,
        )
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES},
        )
    )
    yield env
    await env.shutdown()


def temporal_address(env: WorkflowEnvironment) -> str:
    """host:port of an environment's server."""
    return env.client.service_client.config.target_host


# ------------------------------------------------------------------------------------------------ the stack


@pytest.fixture(scope="session")
def instruments() -> InstrumentCatalog:
    return static_instruments()


def make_settings(database_url: str, address: str, **sections: object) -> Settings:
    """Settings for a test stack: its own task queue, a driven paper venue, no DAY expiry during the run."""
    day_close = (datetime.now(UTC) + timedelta(hours=12)).time().replace(microsecond=0)
    base = {
        "database_url": database_url,
        "data_dir": Path("unused"),
        "temporal": TemporalSettings(address=address, task_queue=f"test-{uuid.uuid4().hex[:8]}"),
        "worker": WorkerSettings(metrics_port=0),
        "paper": PaperSettings(tick_interval_ms=0),
        # Orders poll their broker by themselves (no sweeper runs in a test stack unless a test starts one:
        # ``Stack.sweeping``; tests/worker/test_sweep.py).
        "orders": OrderSettings(
            day_close_utc=day_close, status_poll_seconds=30, immediacy_timeout_seconds=2, sweep_seconds=0
        ),
        # Lifecycle tests park limit orders far from the market; the price band has tests of its own.
        "risk": RiskPolicy(
            classes={c: ClassLimits(price_band_pct=Decimal(60), leverage=Decimal(4)) for c in InstrumentClass}
        ),
        # The driven paper venue publishes only when a test moves it, so its quotes age through a session;
        # staleness has tests of its own (tests/core/test_marketdata.py,
        # tests/activities/test_risk_reference_prices.py).
        "market_data": MarketDataSettings(max_age_seconds=24 * 3600),
        # An app that owns its pool (the fuzz run, start-up tests) writes no audit checkpoints into the cwd.
        "audit": AuditSettings(checkpoint_interval_seconds=0),
    }
    base.update(sections)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_env: WorkflowEnvironment) -> Settings:
    return make_settings(database_url, temporal_address(temporal_env))


@pytest.fixture(scope="session")
async def stack(
    temporal_env: WorkflowEnvironment,
    settings: Settings,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    database_url: str,
) -> AsyncIterator[Stack]:
    """The worker with the paper broker, running on the dev server for the whole session."""
    brokers = {"paper": paper_broker(instruments, pool, database_url, journal_key="paper")}
    async with Stack.running(temporal_env.client, settings, pool, instruments, brokers) as s:
        yield s


@pytest.fixture(scope="session")
async def ts_stack(
    time_skipping_env: WorkflowEnvironment,
    pool: AsyncConnectionPool,
    instruments: InstrumentCatalog,
    database_url: str,
) -> AsyncIterator[Stack]:
    """A second stack on the time-skipping server (its own task queue and venue journal)."""
    s = make_settings(database_url, temporal_address(time_skipping_env))
    brokers = {"paper": paper_broker(instruments, pool, database_url, journal_key="paper-time-skipping")}
    async with Stack.running(time_skipping_env.client, s, pool, instruments, brokers, env=time_skipping_env) as st:
        yield st
