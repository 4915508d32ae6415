"""Every Prometheus metric Exodus exports, declared once.

The API process exports the request-side figures (orders received and the risk decisions it returned);
the worker process exports the lifecycle (submission, fills, completion, reconciliation) on its own
port. Both use ``exodus_order_latency_seconds`` with a ``stage`` label:

=================  =======  ====================================================================
stage              process  from .. to
=================  =======  ====================================================================
``decision``       api      REST request received .. risk decision returned
``risk``           worker   risk activity start .. decision recorded
``submit``         worker   broker submission call (one attempt)
``fill``           worker   order received .. last fill booked (filled orders)
``end_to_end``     worker   order received .. final state booked (every order that reached a broker)
=================  =======  ====================================================================
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "AUTH_FAILURES",
    "BOOKING_FAILURES",
    "BROKER_CONNECTED",
    "BROKER_HEARTBEAT_AGE",
    "BROKER_LAST_CALL_AGE",
    "BROKER_REQUESTS",
    "BROKER_SWEEPS",
    "SWEEP_SIGNALS",
    "MT5_TERMINAL_CONNECTED",
    "MT5_TERMINAL_HEARTBEAT_AGE",
    "BROKER_ERRORS",
    "CIRCUIT_BREAKER_TRIPS",
    "FILLS",
    "LIST_UNPROTECTED",
    "ORDERS",
    "ORDERS_COMPLETED",
    "ORDERS_REJECTED",
    "ORDER_LATENCY",
    "OVERFILLS",
    "QUOTES_STALE",
    "QUOTE_AGE",
    "RECONCILIATION_BREAKS",
    "RECONCILIATION_DIFFERENCES",
    "RECONCILIATION_LAST_RUN",
    "REPORTS_ANSWERED",
    "REPORTS_UNMATCHED",
    "STREAM_CLIENTS",
    "STREAM_LAGGING",
    "TRADING_HALTED",
]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

ORDERS = Counter("exodus_orders_total", "Orders received over REST, by broker and outcome", ["broker", "outcome"])
ORDERS_REJECTED = Counter("exodus_orders_rejected_total", "Orders refused, by reason code", ["reason"])
ORDER_LATENCY = Histogram(
    "exodus_order_latency_seconds", "Order lifecycle latency by stage", ["stage"], buckets=_BUCKETS
)
ORDERS_COMPLETED = Counter(
    "exodus_orders_completed_total", "Orders that reached a final state, by broker and status", ["broker", "status"]
)
FILLS = Counter("exodus_fills_total", "Fills booked in the ledger, by broker", ["broker"])
OVERFILLS = Counter("exodus_overfills_total", "Fills refused because they would overfill the order", ["broker"])
RECONCILIATION_BREAKS = Counter(
    "exodus_reconciliation_breaks_total", "Differences found between a broker and the ledger", ["broker", "kind"]
)
#: End-of-day reconciliation (workflows/reconciliation.py): the differences of each broker's latest run, by kind
#: (0 when a kind has none), and when that run finished.
RECONCILIATION_DIFFERENCES = Gauge(
    "exodus_reconciliation_differences",
    "Differences found by the latest end-of-day reconciliation run, by broker and kind",
    ["broker", "kind"],
)
RECONCILIATION_LAST_RUN = Gauge(
    "exodus_reconciliation_last_run_timestamp_seconds",
    "When the latest end-of-day reconciliation run of a broker finished (Unix time)",
    ["broker"],
)
REPORTS_ANSWERED = Counter(
    "exodus_reports_answered_total",
    "Execution reports not signaled because the answer to their order's submission carried them",
    ["broker"],
)
REPORTS_UNMATCHED = Counter(
    "exodus_reports_unmatched_total", "Execution reports no order workflow took", ["broker", "reason"]
)
BROKER_ERRORS = Counter(
    "exodus_broker_errors_total", "Broker calls that failed, by broker and error", ["broker", "error"]
)
BROKER_REQUESTS = Counter(
    "exodus_broker_requests_total",
    "Calls to a broker from this worker: its activities (submit, cancel, replace, status, statement) and sweeps",
    ["broker", "call"],
)
BROKER_SWEEPS = Counter(
    "exodus_broker_sweeps_total", "Broker sweeps run (worker/sweep.py), by broker and outcome", ["broker", "outcome"]
)
SWEEP_SIGNALS = Counter(
    "exodus_sweep_signals_total",
    "Working orders a broker sweep signaled because the broker's view differed",
    ["broker"],
)
BOOKING_FAILURES = Counter(
    "exodus_booking_failures_total",
    "Attempts to book an order's progress in Postgres that failed (the order workflow retries them)",
    ["broker"],
)
TRADING_HALTED = Gauge("exodus_trading_halted", "1 while global trading is HALTED")
AUTH_FAILURES = Counter(
    "exodus_auth_failures_total",
    "API requests refused: failed authentication (401) or refused authorization (403, or 404 out of scope), "
    "by reason code",
    ["reason"],
)
CIRCUIT_BREAKER_TRIPS = Counter(
    "exodus_circuit_breaker_trips_total", "Accounts or brokers halted by consecutive broker rejections", ["scope"]
)
#: Market data, set from the quote store each time the API's /metrics is scraped (no timer keeps it).
QUOTE_AGE = Gauge(
    "exodus_quote_age_seconds", "Age of the newest quote of each market data source, when scraped", ["source"]
)
QUOTES_STALE = Gauge(
    "exodus_quotes_stale",
    "Symbols whose latest quote from the source is stale (too old for risk), when scraped",
    ["source"],
)

#: Broker sessions (FIX logon, REST streams...), set from ``broker_sessions`` each time the API's /metrics is
#: scraped: whether the session is up, and how long since its owning worker last said it was alive.
BROKER_CONNECTED = Gauge(
    "exodus_broker_connected", "1 while the broker's session is logged on, when scraped", ["broker"]
)
BROKER_HEARTBEAT_AGE = Gauge(
    "exodus_broker_heartbeat_age_seconds",
    "Seconds since the worker owning the broker's session last refreshed it, when scraped",
    ["broker"],
)
#: REST brokers (Alpaca, OANDA, Kraken) record their last successful call; absent until one is recorded.
BROKER_LAST_CALL_AGE = Gauge(
    "exodus_broker_last_call_age_seconds",
    "Seconds since the broker's last successful REST call, when scraped (absent until one is recorded)",
    ["broker"],
)
#: MT5 bridge terminals, set from ``mt5_accounts`` the same way: connected, and the age of the EA's last heartbeat.
MT5_TERMINAL_CONNECTED = Gauge(
    "exodus_mt5_terminal_connected",
    "1 while the account's MT5 terminal is connected to the bridge, when scraped",
    ["account"],
)
MT5_TERMINAL_HEARTBEAT_AGE = Gauge(
    "exodus_mt5_terminal_heartbeat_age_seconds",
    "Seconds since the account's MT5 terminal last sent a heartbeat, when scraped (absent until one is received)",
    ["account"],
)
#: GET /api/v1/stream (issue 16).
STREAM_CLIENTS = Gauge("exodus_stream_clients", "Stream connections this API process serves", ["transport"])
STREAM_LAGGING = Counter(
    "exodus_stream_lagging_total", "Stream clients disconnected because they fell too far behind (resumable)"
)
#: Order lists (issue 15).
LIST_UNPROTECTED = Counter(
    "exodus_list_unprotected_total",
    "Order lists whose protective leg ended unfilled while the position was open, by broker",
    ["broker"],
)
