-- Orders read model, append-only order events, fills, positions and cash, audit log, trading state,
-- reconciliation breaks, reports nobody owned, and the simulated venue's journal.

CREATE TABLE orders (
    order_id          text PRIMARY KEY,
    workflow_id       text NOT NULL,
    idempotency_key   text NOT NULL UNIQUE,
    request_hash      text NOT NULL,
    client_id         text NOT NULL,
    client_order_id   text NOT NULL,
    account           text NOT NULL,
    symbol            text NOT NULL,
    side              text NOT NULL,
    type              text NOT NULL,
    time_in_force     text NOT NULL,
    qty               numeric NOT NULL,
    price             numeric,
    stop_price        numeric,
    expire_at         timestamptz,
    broker            text NOT NULL,
    broker_order_id   text,
    status            text NOT NULL,
    filled_qty        numeric NOT NULL DEFAULT 0,
    avg_price         numeric,
    reason            text,
    flags             text[] NOT NULL DEFAULT '{}',
    risk_decision     jsonb,
    -- seq of the last event reflected in this row; updates never move it backwards
    version           integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX orders_client ON orders (client_id, created_at DESC);
CREATE INDEX orders_symbol ON orders (symbol, created_at DESC);
CREATE INDEX orders_status ON orders (status, created_at DESC);
CREATE INDEX orders_created ON orders (created_at DESC);
CREATE INDEX orders_client_order ON orders (client_id, client_order_id);

CREATE TABLE order_events (
    order_id  text NOT NULL REFERENCES orders (order_id),
    seq       integer NOT NULL,
    at        timestamptz NOT NULL,
    kind      text NOT NULL,
    status    text NOT NULL,
    detail    text NOT NULL DEFAULT '',
    actor     text,
    data      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE fills (
    broker     text NOT NULL,
    exec_id    text NOT NULL,
    order_id   text NOT NULL REFERENCES orders (order_id),
    account    text NOT NULL,
    symbol     text NOT NULL,
    side       text NOT NULL,
    qty        numeric NOT NULL CHECK (qty > 0),
    price      numeric NOT NULL CHECK (price > 0),
    fee        numeric NOT NULL DEFAULT 0,
    filled_at  timestamptz NOT NULL,
    booked_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, exec_id)
);
CREATE INDEX fills_order ON fills (order_id);
CREATE INDEX fills_account ON fills (account, filled_at);

CREATE TABLE positions (
    account       text NOT NULL,
    symbol        text NOT NULL,
    qty           numeric NOT NULL DEFAULT 0,
    avg_price     numeric,
    realized_pnl  numeric NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, symbol)
);

CREATE TABLE cash (
    account     text NOT NULL,
    currency    text NOT NULL,
    balance     numeric NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, currency)
);

-- Kill switch and friends. scope: GLOBAL (key ''), ACCOUNT, SYMBOL.
CREATE TABLE trading_state (
    scope       text NOT NULL,
    scope_key   text NOT NULL DEFAULT '',
    state       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_key)
);
INSERT INTO trading_state (scope, scope_key, state, reason, updated_by)
VALUES ('GLOBAL', '', 'ACTIVE', 'initial state', 'system');

-- Append-only; each row carries the hash of the previous one, so an edit anywhere breaks the chain.
CREATE TABLE audit_log (
    id         bigserial PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    subject    text NOT NULL DEFAULT '',
    detail     jsonb NOT NULL DEFAULT '{}',
    prev_hash  text NOT NULL,
    hash       text NOT NULL UNIQUE
);

CREATE TABLE reconciliation_breaks (
    id           bigserial PRIMARY KEY,
    order_id     text,
    broker       text NOT NULL,
    kind         text NOT NULL,
    detail       text NOT NULL,
    detected_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    UNIQUE (order_id, kind, detail)
);

-- Execution reports that reached no order workflow (unknown client order id, or the order already closed).
CREATE TABLE unmatched_reports (
    broker       text NOT NULL,
    exec_id      text NOT NULL,
    client_order_id text NOT NULL,
    reason       text NOT NULL,
    report       jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, exec_id)
);

-- The simulated venue's own book (it plays the broker, so it keeps its own records).
CREATE TABLE sim_orders (
    venue            text NOT NULL,
    venue_order_id   text NOT NULL,
    client_order_id  text NOT NULL,
    status           text NOT NULL,
    body             jsonb NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (venue, venue_order_id)
);
CREATE INDEX sim_orders_client ON sim_orders (venue, client_order_id);

CREATE TABLE sim_reports (
    venue            text NOT NULL,
    exec_id          text NOT NULL,
    client_order_id  text NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (venue, exec_id)
);
CREATE INDEX sim_reports_undelivered ON sim_reports (venue) WHERE delivered_at IS NULL;

-- Submissions that reused a client order id the venue already had (should stay empty).
CREATE TABLE sim_duplicate_submits (
    id               bigserial PRIMARY KEY,
    venue            text NOT NULL,
    client_order_id  text NOT NULL,
    at               timestamptz NOT NULL DEFAULT now()
);
