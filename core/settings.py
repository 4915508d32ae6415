"""Settings: one pydantic-settings root with nested sections, read from the environment and ``.env``.

Every field can be set as ``EXODUS_<SECTION>__<FIELD>`` (for example ``EXODUS_API__PORT=8001``);
``DATABASE_URL`` is honoured as is. Build settings once with ``get_settings()`` and pass them down; never
read them from a module-level global.
"""

from __future__ import annotations

import ipaddress
from datetime import time
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.auth import ALL, Role, Scope, Tenant
from core.domain import InstrumentClass
from core.errors import ConfigError
from core.risk import RiskPolicy

__all__ = [
    "AlpacaSettings",
    "ApiSettings",
    "AuthSettings",
    "DatabaseSettings",
    "FixSettings",
    "IBSettings",
    "MarketDataClassSettings",
    "MarketDataSettings",
    "JwtSettings",
    "KrakenSettings",
    "Mt5AccountSettings",
    "Mt5Settings",
    "Mt5TerminalSettings",
    "OandaSettings",
    "OrderSettings",
    "PaperSettings",
    "ReconciliationSettings",
    "Settings",
    "StreamSettings",
    "TemporalSettings",
    "TokenSettings",
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

    @model_validator(mode="after")
    def _ui_url_follows_the_ui_port(self) -> TemporalSettings:
        # Unless a URL is given (a UI server of its own), the links go to the dev server's UI port.
        if "ui_url" not in self.model_fields_set:
            self.ui_url = f"http://localhost:{self.ui_port}"
        return self

    def broker_task_queue(self, broker: str) -> str:
        """The task queue polled only by the worker that owns ``broker``'s session."""
        return f"{self.task_queue}-broker-{broker}"


class DatabaseSettings(BaseModel):
    """Postgres connection pool sizing (the URL is the top-level ``DATABASE_URL``)."""

    pool_min: int = Field(1, ge=1)
    pool_max: int = Field(10, ge=1)
    #: The role every pooled connection takes (``SET ROLE``; migration 0022 creates it): it may append to the
    #: audit log but not change or delete it. Empty: stay the login role (only for a login that is already it).
    app_role: str = Field("exodus_app", pattern=r"^[a-z_][a-z0-9_]{0,62}$|^$")


class TokenSettings(BaseModel):
    """One development bearer token (``EXODUS_API__TOKENS``) and the principal it stands for.

    The plain form ``{"desk-a": "<token>"}`` is a trader whose scope is its own name as client id and
    account (any broker) and whose tenant is its name.
    """

    token: SecretStr
    roles: list[Role] = [Role.TRADER]
    #: None: the principal's own name as client id and account, every broker.
    scope: Scope | None = None
    #: None: the principal's name.
    tenant: Tenant | None = None


class ApiSettings(BaseModel):
    """The REST API."""

    host: str = "127.0.0.1"
    port: int = 8000
    #: Development bearer tokens by principal name: ``{"desk-a": "s3cret"}`` (a trader for its own name) or
    #: ``{"ops": {"token": "...", "roles": ["operator"], "scope": {"clients": "*", ...}}}``. Not accepted in
    #: ``prod`` (use API keys or JWT there).
    tokens: dict[str, TokenSettings] = {}
    #: Largest page size of list endpoints.
    max_page_size: int = 500
    #: How long POST /orders waits for the risk decision before answering 202 "pending" (the order is
    #: durable by then and is decided as soon as a worker runs).
    decision_timeout_seconds: float = Field(15.0, gt=0)
    #: Largest request body in bytes; larger ones are refused with 413 (with or without Content-Length).
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    #: The same for the MT5 bridge endpoints, whose heartbeats carry every position, order and symbol.
    max_bridge_body_bytes: int = Field(1024 * 1024, ge=1024)
    #: How long a request waits for a Postgres connection before it is answered 503 with ``Retry-After``
    #: (while Postgres restarts, requests fail fast instead of hanging; the pool reconnects by itself).
    database_wait_seconds: float = Field(3.0, gt=0)
    #: How long an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``).
    keep_alive_seconds: int = Field(5, ge=1)

    @field_validator("tokens", mode="before")
    @classmethod
    def _plain_tokens(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            name: {"token": entry} if isinstance(entry, (str, SecretStr)) else entry for name, entry in value.items()
        }

    @model_validator(mode="after")
    def _token_defaults(self) -> ApiSettings:
        for name, entry in self.tokens.items():
            if entry.scope is None:
                entry.scope = Scope(clients=[name], accounts=[name], brokers=ALL)
            if entry.tenant is None:
                entry.tenant = name
        return self


class JwtSettings(BaseModel):
    """JWT bearer tokens from the desks' identity provider, verified with pyjwt.

    JWT is on when a key source is set: ``jwks_file`` or ``jwks_url`` (RS/ES/PS algorithms), or
    ``hs256_secret`` (development only). ``issuer`` and ``audience`` are then required. Roles and scope come
    from the claims named here (a list, a space/comma-separated string, or ``"*"``); a dotted name reaches
    into nested claims (``realm_access.roles``).
    """

    issuer: str | None = None
    audience: str | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    hs256_secret: SecretStr | None = None
    #: Asymmetric algorithms accepted with the key set (HS256 is accepted only with ``hs256_secret``).
    algorithms: list[str] = ["RS256", "ES256", "PS256"]
    #: Clock skew allowed on exp, nbf and iat.
    leeway_seconds: float = Field(30.0, ge=0)
    #: How long keys fetched from ``jwks_url`` are kept.
    jwks_cache_seconds: int = Field(300, ge=0)
    name_claim: str = "sub"
    roles_claim: str = "roles"
    clients_claim: str = "exodus_clients"
    accounts_claim: str = "exodus_accounts"
    brokers_claim: str = "exodus_brokers"
    #: The tenant (idempotency namespace); missing: the principal's name.
    tenant_claim: str = "tenant"

    @property
    def enabled(self) -> bool:
        """Whether a key source is configured."""
        return bool(self.jwks_file or self.jwks_url or self.hs256_secret)


class AuthSettings(BaseModel):
    """Authentication sources and which operational endpoints are open.

    With no identity source (no API keys, no JWT, no ``api.tokens``) the API runs in development mode:
    every caller is a full-power development principal, every answer carries ``X-Exodus-Auth: disabled``,
    the API refuses to bind anything but a loopback address, and ``prod`` refuses to start.
    """

    #: Accept API keys (``python -m api.keys``), stored hashed in Postgres.
    api_keys: bool = False
    jwt: JwtSettings = JwtSettings()
    #: /ready, /metrics, /docs and /openapi.json without credentials. None: open in dev, closed in prod.
    open_ready: bool | None = None
    open_metrics: bool | None = None
    open_docs: bool | None = None


class WorkerSettings(BaseModel):
    """The worker process."""

    #: Port of the worker's Prometheus endpoint (0 disables it).
    metrics_port: int = 9464
    #: Address the worker's Prometheus endpoint binds to (0.0.0.0 in containers).
    metrics_host: str = "127.0.0.1"
    #: Port of the Temporal SDK's own Prometheus metrics (task latencies, pollers, sticky cache); 0: off.
    temporal_metrics_port: int = 9465
    #: Broker sessions this worker owns; it polls their task queues. Each session has exactly one owner among the
    #: workers on a database (a Postgres advisory lock per broker, ``worker/ownership.py``).
    brokers: list[str] = ["paper"]
    #: A broker in ``brokers`` that another worker owns is waited for in the background and taken over when its
    #: owner stops (false: the worker refuses to start after ``claim_wait_seconds``).
    standby: bool = False
    #: How long a worker (not standby) waits at start-up for a broker's previous owner to go away.
    claim_wait_seconds: float = Field(15.0, ge=0)
    #: How often a worker checks that it still holds its brokers' claims (and a standby tries to take them).
    claim_check_seconds: float = Field(2.0, gt=0)
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


class MarketDataClassSettings(BaseModel):
    """How the risk check treats quotes of one instrument class."""

    model_config = ConfigDict(extra="forbid")

    #: A quote older than this is stale (None: ``market_data.max_age_seconds``).
    max_age_seconds: float | None = Field(None, gt=0)
    #: Without a fresh quote, a limit or stop order is valued at its own price instead of being refused
    #: (market and pegged orders are refused either way).
    own_price_without_quote: bool = False


class MarketDataSettings(BaseModel):
    """The quote store every process reads, and how risk uses it (``core/marketdata.py``)."""

    model_config = ConfigDict(extra="forbid")

    #: A quote older than this (by the source's time) is stale: risk refuses to price with it.
    max_age_seconds: float = Field(30.0, gt=0)
    #: Per instrument class: another age limit, and whether limit/stop orders may go without a fresh quote.
    classes: dict[InstrumentClass, MarketDataClassSettings] = {}
    #: Per symbol: the source that prices it for every broker (default: the order's own broker). A simulated
    #: source (``paper``) never prices a real broker's order, whatever this says.
    sources: dict[str, str] = {}
    #: Sources ``/ready`` expects to hear from (a note when one is silent). Empty: the sources named in
    #: ``sources`` and every source that has published before.
    expected_sources: list[str] = []
    #: How often the worker writes what its brokers published (one multi-row upsert).
    flush_interval_ms: int = Field(500, ge=10)
    #: An unchanged quote is written again (with its new time) at most this often.
    refresh_seconds: float = Field(5.0, gt=0)


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
    #: "relaxed": application messages are checked for their structure only (values of other FIX versions,
    #: missing or unknown fields reach the adapter, which judges them); "strict": the dictionary as it is.
    validation: Literal["relaxed", "strict"] = "relaxed"
    #: How the adapter asks the venue about an order: "order" (an OrderStatusRequest 35=H per order; when the
    #: venue refuses them it falls back to "none"), or "none" (never ask: the venue's reports are the record).
    status_requests: Literal["order", "none"] = "order"
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
    #: Subscribe to the venue's top of book (MarketDataRequest 35=V) after each logon and publish the quotes
    #: (source "fix"). Unset: on with the local venue, off for a counterparty (not all offer market data).
    market_data: bool | None = None
    #: Exodus symbols to subscribe to; empty: the symbol map's symbols, or else every instrument.
    market_data_symbols: list[str] = []
    #: ``make run`` starts the local FIX venue (``python -m devstack.venues.fix``) and lets the worker own "fix".
    local_venue: bool = False
    #: Feed step interval of the local venue.
    local_venue_tick_interval_ms: int = Field(500, ge=0)


class AlpacaSettings(BaseModel):
    """The Alpaca broker (``brokers/alpaca``, Trading API v2) and the local Alpaca venue ``make run`` can start.

    Paper trading by default; live is ``base_url=https://api.alpaca.markets`` with live keys (paper and live keys
    are separate). The trade_updates stream URL derives from ``base_url`` unless ``stream_url`` is set.
    """

    base_url: str = "https://paper-api.alpaca.markets"
    #: Market data (latest quotes for risk's reference price).
    data_url: str = "https://data.alpaca.markets"
    #: Default: ``base_url`` with ws(s):// and path ``/stream``.
    stream_url: str | None = None
    #: ``APCA-API-KEY-ID`` / ``APCA-API-SECRET-KEY``.
    key_id: SecretStr | None = None
    secret_key: SecretStr | None = None
    #: How long one HTTP request may take before its outcome counts as unknown.
    request_timeout_seconds: float = Field(5.0, gt=0)
    #: Requests per minute the adapter allows itself (Alpaca's limit is 200 per key); a 429 waits for the reset.
    rate_limit_per_minute: int = Field(190, ge=1)
    #: How often a 429 (or a 5xx on a read) is retried inside one call, with backoff, before the call reports
    #: the broker unavailable (the order workflow then asks again later; nothing is ever rejected for it).
    max_retries: int = Field(4, ge=0)
    #: Longest single wait for a rate-limit reset or a backoff step.
    max_backoff_seconds: float = Field(8.0, gt=0)
    #: Latest quotes are asked for this often (one request for all symbols) and published as source "alpaca".
    quote_interval_ms: int = Field(1000, ge=0)
    #: Exodus symbols to ask quotes for; empty: every equity instrument.
    quote_symbols: list[str] = []
    #: Market data feed asked for quotes: "iex" (free plans) or "sip".
    data_feed: Literal["iex", "sip"] = "iex"
    #: Exodus symbol -> Alpaca symbol, for instruments spelled differently.
    symbol_map: dict[str, str] = {}
    #: The Exodus account positions are reported for (Alpaca has one account per key).
    account: str = "alpaca"
    #: ``make run`` starts the local Alpaca venue (``python -m devstack.venues.alpaca``) on ``local_venue_port``,
    #: points the adapter at it and lets the worker own "alpaca".
    local_venue: bool = False
    local_venue_port: int = Field(8790, ge=1, le=65535)
    local_venue_tick_interval_ms: int = Field(500, ge=0)
    #: The local venue's rate limit (requests per minute per key; 0: none).
    local_venue_rate_limit_per_minute: int = Field(0, ge=0)

    def resolved_stream_url(self) -> str:
        """The trade_updates WebSocket URL."""
        if self.stream_url:
            return self.stream_url
        base = self.base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base.removeprefix("https://") + "/stream"
        return "ws://" + base.removeprefix("http://") + "/stream"


class OandaSettings(BaseModel):
    """The OANDA broker (``brokers/oanda``, v20 REST, FX) and the local OANDA venue ``make run`` can start.

    Practice (fxTrade Practice) by default; live is ``base_url=https://api-fxtrade.oanda.com`` and
    ``stream_url=https://stream-fxtrade.oanda.com`` with a live token (a practice token does not work on live).
    """

    base_url: str = "https://api-fxpractice.oanda.com"
    #: The streaming host (the transaction stream): ``https://stream-fxpractice.oanda.com`` on practice.
    stream_url: str = "https://stream-fxpractice.oanda.com"
    #: The personal access token (``Authorization: Bearer``); one token covers every sub-account.
    token: SecretStr | None = None
    #: The v20 account id (``101-004-1234567-001``).
    account_id: str = ""
    #: How long one HTTP request may take before its outcome counts as unknown.
    request_timeout_seconds: float = Field(5.0, gt=0)
    #: Requests per second the adapter allows itself (OANDA answers 429 above 120/s; its advice is 100/s).
    rate_limit_per_second: int = Field(100, ge=1)
    #: How often a 429 (or a 5xx on a read) is retried inside one call before the call reports the broker
    #: unavailable (the order workflow asks again later; nothing is ever rejected for it).
    max_retries: int = Field(4, ge=0)
    #: Longest single wait for a rate-limit pause or a backoff step.
    max_backoff_seconds: float = Field(8.0, gt=0)
    #: The transaction stream counts as dead after this long without a line (OANDA sends a heartbeat every 5 s).
    stream_timeout_seconds: float = Field(20.0, gt=0)
    #: Prices are asked for this often (one ``/pricing`` request for all symbols) and published as source "oanda".
    quote_interval_ms: int = Field(1000, ge=0)
    #: Exodus symbols to ask prices for; empty: every FX instrument.
    quote_symbols: list[str] = []
    #: Exodus symbol -> OANDA instrument, where ``EURUSD -> EUR_USD`` is not the rule.
    symbol_map: dict[str, str] = {}
    #: The Exodus account positions are reported for.
    account: str = "oanda"
    #: ``make run`` starts the local OANDA venue (``python -m devstack.venues.oanda``) on ``local_venue_port``,
    #: points the adapter at it and lets the worker own "oanda".
    local_venue: bool = False
    local_venue_port: int = Field(8791, ge=1, le=65535)
    local_venue_tick_interval_ms: int = Field(500, ge=0)
    #: The local venue's rate limit (requests per second per token; 0: none; OANDA's is 120).
    local_venue_rate_limit_per_second: int = Field(0, ge=0)


class IBSettings(BaseModel):
    """Interactive Brokers (``brokers/ib``) through TWS or IB Gateway's socket API (``ib_async``).

    ``make run`` can start the local TWS venue instead (``python -m devstack.venues.ib``).

    Ports: TWS live 7496, TWS paper 7497, IB Gateway live 4001, IB Gateway paper 4002. The logged-in TWS/Gateway
    session is the credential; the API socket must be enabled in it.
    """

    host: str = "127.0.0.1"
    port: int = Field(7497, ge=1, le=65535)
    #: The API client id of the worker's session (unique per connection to one TWS/Gateway).
    client_id: int = Field(17, ge=0)
    #: The IB account orders go to ("" with a single managed account: that one).
    account: str = ""
    #: How long one request (a placeOrder's acknowledgement, a cancel, a lookup) may take before its outcome counts
    #: as unknown (``BrokerUnavailable``, never a refusal).
    request_timeout_seconds: float = Field(5.0, gt=0)
    #: How long ``connect`` may take (the API handshake and the start-up sync).
    connect_timeout_seconds: float = Field(10.0, gt=0)
    #: Reconnect backoff after a dropped session: first wait, doubling up to the cap.
    reconnect_initial_seconds: float = Field(0.5, gt=0)
    reconnect_max_seconds: float = Field(30.0, gt=0)
    #: Messages per second the client sends at most (IB allows about 50; ib_async throttles to 45 by default).
    max_messages_per_second: int = Field(45, ge=1, le=50)
    #: How long a fill waits for its commissionReport before it is booked without a fee.
    commission_wait_seconds: float = Field(2.0, ge=0)
    #: Exchange and currency of the stock contracts orders name (``SMART``/``USD``); per-symbol overrides below.
    exchange: str = "SMART"
    currency: str = "USD"
    #: Exodus symbol -> IB contract: ``{"EURUSD": {"symbol": "EUR", "secType": "CASH", "exchange": "IDEALPRO",
    #: "currency": "USD"}}``; symbols not listed are stocks (STK) on ``exchange`` in ``currency``.
    contracts: dict[str, dict[str, str]] = {}
    #: Quotes (reqMktData snapshots) are asked for this often and published as source "ib"; 0: never.
    quote_interval_ms: int = Field(1000, ge=0)
    #: Exodus symbols to ask quotes for; empty: every equity instrument.
    quote_symbols: list[str] = []
    #: 1 live, 2 frozen, 3 delayed, 4 delayed frozen (reqMarketDataType): delayed data needs no subscription.
    market_data_type: int = Field(1, ge=1, le=4)
    #: ``make run`` starts the local TWS venue on ``local_venue_port``, points the adapter at it and lets the worker
    #: own "ib".
    local_venue: bool = False
    local_venue_port: int = Field(7597, ge=1, le=65535)
    local_venue_tick_interval_ms: int = Field(500, ge=0)


class KrakenSettings(BaseModel):
    """The Kraken spot broker (``brokers/kraken``, REST) and the local Kraken venue ``make run`` can start.

    Kraken has no spot sandbox: ``base_url`` is the live API unless the local venue is used.
    """

    base_url: str = "https://api.kraken.com"
    #: ``API-Key`` and the base64 private key ``API-Sign`` is computed with.
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    #: Only if the key has a second factor for trading (sent as ``otp``).
    otp: SecretStr | None = None
    #: How long one HTTP request may take before its outcome counts as unknown.
    request_timeout_seconds: float = Field(5.0, gt=0)
    #: Kraken's verification tier: sets the call counter the adapter keeps itself under (starter 15 at -0.33/s,
    #: intermediate 20 at -0.5/s, pro 20 at -1/s) and the per-pair trading counter (60/1, 125/2.34, 180/3.75).
    tier: Literal["starter", "intermediate", "pro"] = "starter"
    #: Overrides the tier's REST call counter (maximum, decay per second): the local venue, which has none by default.
    call_counter_limit: float | None = Field(None, gt=0)
    call_counter_decay: float | None = Field(None, gt=0)
    #: How often a throttled request (or a read failing with a 5xx or EService) is retried inside one call.
    max_retries: int = Field(6, ge=0)
    #: Longest single wait for a throttle or a backoff step.
    max_backoff_seconds: float = Field(8.0, gt=0)
    #: AddOrder and AmendOrder carry ``deadline`` = now + this: a request that reaches the engine later is refused
    #: ("EService:Deadline elapsed"), so a late duplicate cannot execute (Kraken allows 2 to 60 s).
    deadline_seconds: float = Field(10.0, ge=2, le=60)
    #: Open orders and their trades are polled this often (there is no execution stream yet).
    poll_interval_ms: int = Field(1000, ge=50)
    #: Tickers are asked this often and published as quotes of source "kraken" (0: never).
    quote_interval_ms: int = Field(2000, ge=0)
    #: Exodus symbols to ask tickers for; empty: every instrument in the adapter's pair table.
    quote_symbols: list[str] = []
    #: The Exodus account positions (balances) are reported for (Kraken has one account per key).
    account: str = "kraken"
    #: ``make run`` starts the local Kraken venue (``python -m devstack.venues.kraken``) on ``local_venue_port``,
    #: points the adapter at it and lets the worker own "kraken".
    local_venue: bool = False
    local_venue_port: int = Field(8794, ge=1, le=65535)
    local_venue_tick_interval_ms: int = Field(500, ge=0)


class OrderSettings(BaseModel):
    """Order lifecycle timing."""

    #: DAY orders expire at this UTC time (the next one after the order was received).
    day_close_utc: time = time(21, 0)
    #: While an order works, the workflow asks the broker for its status this often (a safety net for
    #: lost reports).
    status_poll_seconds: float = Field(60.0, gt=0)
    #: A broker with mass status (``capabilities.mass_status``) is swept this often by the worker owning its
    #: session: one request lists its open orders, and only orders whose fills or state differ from Postgres are
    #: signaled; its working orders arm no poll timer of their own. 0: no sweeps, every order polls.
    sweep_seconds: float = Field(30.0, ge=0)
    #: An IOC/FOK order that the broker leaves working this long is canceled by the workflow.
    immediacy_timeout_seconds: float = Field(5.0, gt=0)
    #: How long a broker request may take before it counts as timed out (then retried after a status check).
    broker_call_timeout_seconds: float = Field(15.0, gt=0)
    #: An order's workflow continues as a new run (carrying its whole state) once its history has this many
    #: events, or earlier when Temporal suggests it. Temporal terminates a workflow at 51,200 events.
    continue_as_new_events: int = Field(2000, ge=50, le=40000)
    #: An emulated trailing stop (a broker without a native one) checks the quote store this often: a durable
    #: timer and a quote read per check, so its history grows by the interval, not by the market's ticks.
    trail_check_seconds: float = Field(1.0, ge=0.05, le=3600)


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


class LogSettings(BaseModel):
    """Log lines of every process (``core/logs.py``)."""

    #: ``auto``: readable on a terminal, one JSON object per line otherwise (files, containers); or force one.
    format: Literal["auto", "json", "text"] = "auto"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AuditSettings(BaseModel):
    """The audit trail's checkpoints, outside the database (issue 17), and its retention."""

    #: HMAC-SHA256 key that signs each checkpoint (``python -m core.audit verify`` checks the signatures).
    checkpoint_key: SecretStr | None = None
    #: Seconds between checkpoints written by the API (the chain's head, its row count and time); 0: none.
    checkpoint_interval_seconds: float = Field(300.0, ge=0)
    #: Where checkpoints are appended (JSON lines). Default: ``<data_dir>/audit/checkpoints.jsonl``.
    checkpoint_file: Path | None = None
    #: How long the audit rows, orders, fills and decisions must be kept (days; seven years by default).
    #: Exodus deletes none of them; this is the archive's period, shown by ``python -m core.audit verify``.
    retention_days: int = Field(2557, ge=1)

    @field_validator("checkpoint_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class StreamSettings(BaseModel):
    """GET /api/v1/stream (issue 16): heartbeats, per-client buffers, the wake-up's fallback poll."""

    #: A heartbeat (with the position to resume from) after this long without an event.
    heartbeat_seconds: float = Field(15.0, gt=0)
    #: Events a client may have waiting to be sent; one more and it is told it lags and is disconnected.
    client_buffer: int = Field(1000, ge=1)
    #: Rows a catching-up client reads from the table at a time.
    page_size: int = Field(500, ge=1, le=10000)
    #: How often each API process reads the table when no notification woke it (a lost NOTIFY costs this much).
    poll_seconds: float = Field(2.0, gt=0)
    #: Largest number of stream connections one API process serves (more are answered 503).
    max_clients: int = Field(1000, ge=1)
    #: A client whose connection takes no message for this long (catching up or live) is told it lags and cut off.
    send_timeout_seconds: float = Field(30.0, gt=0)
    #: Events older than this are pruned from ``stream_events`` (0: keep everything); a client resuming from a
    #: pruned position is told so (410, or a ``reset`` message), never silently skipped ahead.
    retention_hours: float = Field(168.0, ge=0)
    #: How often each API process prunes (one at a time across processes).
    prune_seconds: float = Field(300.0, gt=0)


class ReconciliationSettings(BaseModel):
    """End-of-day reconciliation with each broker (issue 17; ``workflows/reconciliation.py``)."""

    #: A Temporal Schedule per broker of ``worker.brokers`` (created or updated by the worker owning it at start).
    schedule_enabled: bool = True
    #: When each broker's schedule runs, every day (UTC).
    time_utc: time = time(21, 30)
    #: Which day a scheduled run reconciles: 0 the day it runs, 1 the day before (for a run after midnight).
    days_back: int = Field(0, ge=0, le=7)
    #: Orders and fills younger than this when the broker's statement is taken are left for the next run (an
    #: order just sent, a fill not booked yet).
    grace_seconds: float = Field(120.0, ge=0)
    #: How far back ``POST /api/v1/reconciliations`` may reconcile (days).
    max_age_days: int = Field(400, ge=1)


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
    auth: AuthSettings = AuthSettings()
    worker: WorkerSettings = WorkerSettings()
    paper: PaperSettings = PaperSettings()
    fix: FixSettings = FixSettings()
    orders: OrderSettings = OrderSettings()
    #: The risk policy in force until an operator stores one (PUT /api/v1/risk/policy).
    risk: RiskPolicy = RiskPolicy()
    mt5: Mt5Settings = Mt5Settings()
    alpaca: AlpacaSettings = AlpacaSettings()
    oanda: OandaSettings = OandaSettings()
    ib: IBSettings = IBSettings()
    kraken: KrakenSettings = KrakenSettings()
    market_data: MarketDataSettings = MarketDataSettings()
    audit: AuditSettings = AuditSettings()
    log: LogSettings = LogSettings()
    stream: StreamSettings = StreamSettings()
    reconciliation: ReconciliationSettings = ReconciliationSettings()

    @model_validator(mode="after")
    def _enforce_non_default_secrets(self) -> Self:
        if self.environment == "prod":
            for principal, entry in self.api.tokens.items():
                if entry.token.get_secret_value() == "changethis":
                    raise ConfigError(f"api.tokens[{principal!r}] is still the placeholder 'changethis'")
            for account, cfg in self.mt5.accounts.items():
                if cfg.token.get_secret_value() == "changethis":
                    raise ConfigError(f"mt5.accounts[{account!r}].token is still the placeholder 'changethis'")
        return self

    @model_validator(mode="after")
    def _check_jwt(self) -> Self:
        jwt = self.auth.jwt
        if jwt.enabled and not (jwt.issuer and jwt.audience):
            raise ConfigError("auth.jwt needs issuer and audience (EXODUS_AUTH__JWT__ISSUER, __AUDIENCE)")
        if jwt.jwks_file and jwt.jwks_url:
            raise ConfigError("auth.jwt: set jwks_file or jwks_url, not both")
        return self

    def identity_sources(self) -> list[str]:
        """The configured ways to authenticate API callers (empty: development mode, no authentication)."""
        sources = []
        if self.auth.api_keys:
            sources.append("api-keys")
        if self.auth.jwt.enabled:
            sources.append("jwt")
        if self.api.tokens:
            sources.append("tokens")
        return sources

    def check_api_security(self) -> None:
        """Refuse an API configuration that would serve without authentication where it must not.

        ``prod`` needs API keys or JWT (development tokens and an HS256 secret are refused); without any
        identity source the API may bind only a loopback address.
        """
        sources = self.identity_sources()
        if self.environment == "prod":
            if self.api.tokens:
                raise ConfigError("prod does not accept EXODUS_API__TOKENS: create API keys (python -m api.keys)")
            if self.auth.jwt.hs256_secret is not None:
                raise ConfigError("prod does not accept an HS256 JWT secret: configure a key set (jwks_file/jwks_url)")
            if not sources:
                raise ConfigError(
                    "prod needs an identity source: EXODUS_AUTH__API_KEYS=true and/or JWT "
                    "(EXODUS_AUTH__JWT__JWKS_URL or __JWKS_FILE, with __ISSUER and __AUDIENCE)"
                )
        if not sources and not _is_loopback(self.api.host):
            raise ConfigError(
                f"no identity source is configured, so the API runs without authentication and binds only to "
                f"127.0.0.1; EXODUS_API__HOST={self.api.host} needs EXODUS_AUTH__API_KEYS=true or JWT"
            )

    def endpoint_open(self, which: Literal["ready", "metrics", "docs"]) -> bool:
        """Whether /ready, /metrics or /docs (+ /openapi.json) answer without credentials."""
        value: bool | None = getattr(self.auth, f"open_{which}")
        return self.environment != "prod" if value is None else value

    def require_database_url(self) -> str:
        """The Postgres URL, or a ``ConfigError`` naming the variable to set."""
        if not self.database_url:
            raise ConfigError("DATABASE_URL is not set (make run sets it for the embedded Postgres)")
        return self.database_url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    """Build the settings once per process."""
    return Settings()
