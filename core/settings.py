"""Settings: one pydantic-settings root with nested sections, read from the environment and ``.env``.

Every field can be set as ``EXODUS_<SECTION>__<FIELD>`` (for example ``EXODUS_API__PORT=8001``);
``DATABASE_URL`` is honoured as is. Build settings once with ``get_settings()`` and pass them down; never
read them from a module-level global.
"""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError
from core.risk import RiskPolicy

__all__ = [
    "ApiSettings",
    "DatabaseSettings",
    "FixSettings",
    "Mt5AccountSettings",
    "Mt5Settings",
    "Mt5TerminalSettings",
    "OrderSettings",
    "PaperSettings",
    "Settings",
    "TemporalSettings",
    "WorkerSettings",
    "get_settings",
]


class TemporalSettings(BaseModel):
    """Where Temporal runs and which task queues Exodus uses."""

    address: str = "localhost:7233"
    namespace: str = "default"
    #: Task queue of the order workflows (and their local activities); broker queues derive from it.
    task_queue: str = "exodus-orders"
    #: Web UI base URL, for links printed by ``make run`` and returned by the API.
    ui_url: str = "http://localhost:8233"
    #: ``make run`` starts a dev server unless this is false (then ``address`` must point at a server).
    start_dev_server: bool = True
    ui_port: int = 8233

    def broker_task_queue(self, broker: str) -> str:
        """The task queue polled only by the worker that owns ``broker``'s session."""
        return f"{self.task_queue}-broker-{broker}"


class DatabaseSettings(BaseModel):
    """Postgres connection pool sizing (the URL is the top-level ``DATABASE_URL``)."""

    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(10, ge=1)


class ApiSettings(BaseModel):
    """The REST API."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Principals and their bearer tokens (``{"desk-a": "s3cret"}``). Empty: no authentication
    #: (development); a caller may then name itself in an ``X-Actor`` header for the audit trail.
    tokens: dict[str, SecretStr] = {}
    #: Largest page size of list endpoints.
    max_page_size: int = 500
    #: How long POST /orders waits for the risk decision before answering 202 "pending" (the order is
    #: durable by then and is decided as soon as a worker runs).
    decision_timeout_seconds: float = Field(15.0, gt=0)


class WorkerSettings(BaseModel):
    """The worker process."""

    #: Port of the worker's Prometheus endpoint (0 disables it).
    metrics_port: int = 9464
    #: Address the worker's Prometheus endpoint binds to (0.0.0.0 in containers).
    metrics_host: str = "127.0.0.1"
    #: Broker sessions this worker owns; it polls their task queues.
    brokers: list[str] = ["paper"]
    #: Concurrency limits.
    max_concurrent_activities: int = 200
    max_concurrent_workflow_tasks: int = 200


class PaperSettings(BaseModel):
    """The simulated paper venue."""

    seed: int = 7
    #: How often the price feed moves and resting orders are matched (0: only when driven by tests).
    tick_interval_ms: int = Field(200, ge=0)
    #: Simulated latency added to every request.
    latency_ms: int = Field(0, ge=0)
    #: Fraction of new orders rejected at random (reject injection).
    reject_rate: float = Field(0.0, ge=0.0, le=1.0)
    #: Orders for these symbols are always rejected (deterministic reject injection).
    reject_symbols: list[str] = []


class FixSettings(BaseModel):
    """The FIX broker session (a QuickFIX initiator) and the local FIX venue ``make run`` can start.

    See ``brokers/fix/README.md`` for what each field does on the wire.
    """

    #: FIX.4.2, FIX.4.4, or FIXT.1.1 (then ``default_appl_ver_id`` is the application version).
    begin_string: Literal["FIX.4.2", "FIX.4.4", "FIXT.1.1"] = "FIX.4.4"
    default_appl_ver_id: Literal["FIX.5.0SP2"] = "FIX.5.0SP2"
    host: str = "127.0.0.1"
    port: int = Field(9878, ge=1, le=65535)
    sender_comp_id: str = "EXODUS"
    target_comp_id: str = "EXVENUE"
    heartbeat_seconds: int = Field(30, ge=1)
    reconnect_interval_seconds: int = Field(5, ge=1)
    logon_timeout_seconds: int = Field(10, ge=1)
    #: Logon Username (553) / Password (554), when the counterparty asks for them.
    username: str | None = None
    password: SecretStr | None = None
    #: QuickFIX message store and logs; default ``<data_dir>/fix``. The store keeps sequence numbers and
    #: sent messages across restarts (resend/gap-fill).
    store_dir: Path | None = None
    #: Validate incoming messages against the data dictionary shipped with the quickfix package (or this file).
    use_data_dictionary: bool = True
    data_dictionary: Path | None = None
    #: Daily session window (UTC). Unset: a non-stop session (sequence numbers never reset by the clock).
    start_time: time | None = None
    end_time: time | None = None
    #: Ask the counterparty to reset sequence numbers at every logon (141=Y); normally off.
    reset_on_logon: bool = False
    #: How long a request waits for the venue's answer before its outcome counts as unknown.
    request_timeout_seconds: float = Field(10.0, gt=0)
    #: Exodus symbol -> the venue's Symbol (55), for venues that spell instruments differently.
    symbol_map: dict[str, str] = {}
    #: Account (1) sent on orders; unset: the order's account.
    account: str | None = None
    #: HandlInst (21): 1 automated/private, 2 automated/public, 3 manual.
    handl_inst: Literal["1", "2", "3"] = "1"
    #: ``make run`` starts the local FIX venue (``python -m sim.fix_venue``) and lets the worker own "fix".
    local_venue: bool = False
    #: Feed step interval of the local venue.
    local_venue_tick_interval_ms: int = Field(500, ge=0)


class OrderSettings(BaseModel):
    """Order lifecycle timing."""

    #: DAY orders expire at this UTC time (the next one after the order was received).
    day_close_utc: time = time(21, 0)
    #: While an order works, the workflow asks the broker for its status this often (a safety net for
    #: lost reports).
    status_poll_seconds: float = Field(60.0, gt=0)
    #: An IOC/FOK order that the broker leaves working this long is canceled by the workflow.
    immediacy_timeout_seconds: float = Field(5.0, gt=0)
    #: How long a broker request may take before it counts as timed out (then retried after a status check).
    broker_call_timeout_seconds: float = Field(15.0, gt=0)
    #: An order's workflow continues as a new run (carrying its whole state) once its history has this many
    #: events, or earlier when Temporal suggests it. Temporal terminates a workflow at 51,200 events.
    continue_as_new_events: int = Field(2000, ge=50, le=40000)


class Mt5AccountSettings(BaseModel):
    """One trading account reached through the MetaTrader 5 bridge (an ExodusBridge EA in its terminal)."""

    #: Bearer token the EA of this account sends (``Authorization: Bearer <token>``).
    token: SecretStr
    #: The MT5 login the terminal must be logged in to; heartbeats from another login are refused (409).
    login: int | None = None


class Mt5TerminalSettings(BaseModel):
    """Windows hosts only: drive a terminal beside the worker through the ``MetaTrader5`` package."""

    #: The bridge account (a key of ``mt5.accounts``) whose commands the terminal executes.
    account: str
    #: terminal64.exe to start, and the login to use (None: attach to the running, logged-in terminal).
    path: str | None = None
    login: int | None = None
    password: SecretStr | None = None
    server: str | None = None
    poll_interval_ms: int = Field(250, ge=10)
    #: Exodus symbols to resolve at start and report (as the EA's InpSymbols), and names that cannot be guessed.
    symbols: list[str] = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"]
    symbol_map: dict[str, str] = {}


class Mt5Settings(BaseModel):
    """The MetaTrader 5 bridge (``brokers/mt5``, the EA in ``mql5/``)."""

    #: Bridge accounts by Exodus account id (the EA's ``InpAccount`` input and the order's ``account``).
    accounts: dict[str, Mt5AccountSettings] = {}
    #: Magic number stamped on every order (the EA's ``InpMagic`` input must be the same).
    magic: int = Field(20260505, ge=1)
    #: No heartbeat for this long marks the account disconnected; new orders for it are refused.
    heartbeat_timeout_seconds: float = Field(30.0, gt=0)
    #: A delivered, unacknowledged command is not handed to another terminal before this has passed.
    lease_seconds: float = Field(30.0, gt=0)
    #: How long a broker call waits for the EA's acknowledgement before it reports an unknown outcome.
    ack_wait_seconds: float = Field(8.0, gt=0)
    #: A new or modify command that no terminal picked up within this is withdrawn (the order is rejected):
    #: an EA that comes back later must not execute stale orders.
    command_ttl_seconds: float = Field(60.0, gt=0)
    #: Most commands handed out per poll.
    max_commands_per_poll: int = Field(20, ge=1, le=200)
    #: How often the worker looks for undelivered reports, stale commands and silent terminals (a safety
    #: net behind LISTEN/NOTIFY).
    housekeeping_interval_seconds: float = Field(1.0, gt=0)
    #: Contract sizes used until the EA has reported the symbol's real one (the EA refuses a mismatch).
    contract_sizes: dict[str, Decimal] = {}
    default_fx_contract_size: Decimal = Decimal("100000")
    #: Maximum slippage in points for market orders on Request/Instant execution symbols.
    deviation_points: int = Field(20, ge=0)
    #: Windows hosts: a terminal driven in-process through the ``MetaTrader5`` package.
    terminal: Mt5TerminalSettings | None = None


class Settings(BaseSettings):
    """Root of all settings."""

    model_config = SettingsConfigDict(
        env_prefix="EXODUS_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
    )

    environment: Literal["dev", "prod"] = "dev"
    #: Runtime state (Temporal's SQLite file, Postgres data, FIX stores, logs).
    data_dir: Path = Path("data")
    #: Postgres URL. Unset: ``make run`` starts an embedded server (pgserver) under ``data_dir``.
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "EXODUS_DATABASE_URL"))
    #: JSON file replacing the default instrument list.
    instruments_file: Path | None = None
    #: Broker used when an order names none.
    default_broker: str = "paper"

    temporal: TemporalSettings = TemporalSettings()
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    worker: WorkerSettings = WorkerSettings()
    paper: PaperSettings = PaperSettings()
    fix: FixSettings = FixSettings()
    orders: OrderSettings = OrderSettings()
    #: The risk policy in force until an operator stores one (PUT /api/v1/risk/policy).
    risk: RiskPolicy = RiskPolicy()
    mt5: Mt5Settings = Mt5Settings()

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Self:
        if self.environment == "prod":
            for principal, token in self.api.tokens.items():
                if token.get_secret_value() == "changethis":
                    raise ConfigError(f"api.tokens[{principal!r}] is still the placeholder 'changethis'")
            for account, cfg in self.mt5.accounts.items():
                if cfg.token.get_secret_value() == "changethis":
                    raise ConfigError(f"mt5.accounts[{account!r}].token is still the placeholder 'changethis'")
        return self

    def require_database_url(self) -> str:
        """The Postgres URL, or a ``ConfigError`` naming the variable to set."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (make run sets it for the embedded Postgres)")
        return self.database_url


@lru_cache
def get_settings() -> Settings:
    """Build the settings once per process."""
    return Settings()
