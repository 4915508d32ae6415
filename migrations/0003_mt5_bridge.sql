-- The MetaTrader 5 bridge (brokers/mt5, the ExodusBridge EA in mql5/): terminals and their liveness, the
-- command outbox with leases, the bridge's view of every order it carries, deals and order events reported
-- by the EA (deduplicated by ticket), and the execution reports derived from them, journaled until the
-- worker has delivered them to the order workflows.

-- One row per bridge account: who is connected, what the terminal last said.
CREATE TABLE mt5_accounts (
    account            text PRIMARY KEY,
    -- Persistent id of the terminal installation (kept in the EA's state file) and of the EA run.
    terminal_id        text,
    session_id         text,
    ea_version         text,
    login              bigint,
    server             text,
    connected          boolean NOT NULL DEFAULT false,
    last_heartbeat_at  timestamptz,
    last_poll_at       timestamptz,
    disconnected_at    timestamptz,
    -- Written by whoever last had the settings (API on heartbeat, worker at start), read by the risk check.
    heartbeat_timeout_s double precision NOT NULL DEFAULT 30,
    terminal           jsonb NOT NULL DEFAULT '{}',
    account_state      jsonb NOT NULL DEFAULT '{}',
    positions          jsonb NOT NULL DEFAULT '[]',
    open_orders        jsonb NOT NULL DEFAULT '[]',
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Symbol specifications as the terminal reported them (base symbol -> broker name, lot rules).
CREATE TABLE mt5_symbols (
    account        text NOT NULL,
    symbol         text NOT NULL,
    broker_symbol  text NOT NULL,
    contract_size  numeric NOT NULL CHECK (contract_size > 0),
    volume_min     numeric NOT NULL,
    volume_step    numeric NOT NULL,
    volume_max     numeric NOT NULL,
    digits         integer NOT NULL,
    filling_mode   integer NOT NULL,
    trade_mode     integer NOT NULL,
    exemode        integer NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, symbol)
);
CREATE INDEX mt5_symbols_broker ON mt5_symbols (account, broker_symbol);

-- The bridge's record of each order it carries (keyed by the Exodus order id, which is the MT5 comment).
CREATE TABLE mt5_orders (
    order_id         text PRIMARY KEY,
    account          text NOT NULL,
    client_order_id  text NOT NULL,
    symbol           text NOT NULL,
    side             text NOT NULL,
    type             text NOT NULL,
    time_in_force    text NOT NULL,
    qty              numeric NOT NULL,
    price            numeric,
    stop_price       numeric,
    contract_size    numeric NOT NULL,
    volume           numeric NOT NULL,
    ticket           bigint,
    broker_symbol    text,
    status           text NOT NULL,
    cum_qty          numeric NOT NULL DEFAULT 0,
    avg_price        numeric,
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX mt5_orders_ticket ON mt5_orders (account, ticket) WHERE ticket IS NOT NULL;
CREATE INDEX mt5_orders_open ON mt5_orders (account, status);

-- The command outbox. A command is handed out on every poll of the terminal that holds its lease (the EA
-- deduplicates by command id), to another terminal only once the lease has run out, and never again once
-- acknowledged. state: PENDING (never delivered) -> LEASED -> ACKED; PENDING -> WITHDRAWN (canceled before
-- delivery) or EXPIRED (no terminal picked it up in time).
CREATE TABLE mt5_commands (
    seq                 bigserial UNIQUE,
    command_id          text PRIMARY KEY,
    account             text NOT NULL,
    order_id            text NOT NULL,
    kind                text NOT NULL,
    body                jsonb NOT NULL,
    state               text NOT NULL DEFAULT 'PENDING',
    lease_owner         text,
    lease_until         timestamptz,
    deliveries          integer NOT NULL DEFAULT 0,
    first_delivered_at  timestamptz,
    -- Set by an in-process executor (Windows) right before it calls order_send.
    in_progress_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    acked_at            timestamptz,
    ack                 jsonb,
    ack_terminal_id     text
);
CREATE INDEX mt5_commands_deliverable ON mt5_commands (account, seq) WHERE state IN ('PENDING', 'LEASED');
CREATE INDEX mt5_commands_order ON mt5_commands (order_id, seq);

-- Deals as the EA reported them; the primary key is the deduplication of fills.
CREATE TABLE mt5_deals (
    account       text NOT NULL,
    deal          bigint NOT NULL,
    order_ticket  bigint NOT NULL,
    order_id      text,
    body          jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, deal)
);

-- Final order states (moved to history) as the EA reported them.
CREATE TABLE mt5_order_updates (
    account       text NOT NULL,
    order_ticket  bigint NOT NULL,
    state         integer NOT NULL,
    order_id      text,
    body          jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, order_ticket, state)
);

-- Execution reports derived from acknowledgements, deals and order updates, until delivered.
CREATE TABLE mt5_reports (
    seq           bigserial PRIMARY KEY,
    exec_id       text NOT NULL UNIQUE,
    account       text NOT NULL,
    order_id      text NOT NULL,
    kind          text NOT NULL,
    body          jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz
);
CREATE INDEX mt5_reports_undelivered ON mt5_reports (account, seq) WHERE delivered_at IS NULL;
CREATE INDEX mt5_reports_order ON mt5_reports (order_id, seq);

-- What happened to each account's link: CONNECTED, DISCONNECTED, RECONNECTED, EA_RESTARTED, RECONCILED,
-- LOGIN_MISMATCH, ACK_CONFLICT, LEASE_TAKEN_OVER, UNMATCHED_DEAL.
CREATE TABLE mt5_account_events (
    id       bigserial PRIMARY KEY,
    account  text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now(),
    kind     text NOT NULL,
    detail   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX mt5_account_events_account ON mt5_account_events (account, id);
