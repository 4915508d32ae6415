-- Pre-trade risk: versioned policy store, reservations, counters, equity marks; trading state scopes.

-- Every version of every policy document. The current policy of a scope is its highest version;
-- a row with body NULL removes an override. Each row records who changed what, when, and why.
CREATE TABLE risk_policy (
    version     bigserial PRIMARY KEY,
    scope       text NOT NULL CHECK (scope IN ('GLOBAL', 'ACCOUNT', 'INSTRUMENT')),
    scope_key   text NOT NULL DEFAULT '',
    body        jsonb,
    old_body    jsonb,
    changed_by  text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    reason      text NOT NULL
);
CREATE INDEX risk_policy_scope ON risk_policy (scope, scope_key, version DESC);

-- What each working order holds of its account's limits. Taken atomically with the approval, adjusted as it
-- fills or is amended, released when the order is final.
CREATE TABLE risk_reservations (
    order_id      text PRIMARY KEY REFERENCES orders (order_id),
    account       text NOT NULL,
    client_id     text NOT NULL,
    symbol        text NOT NULL,
    side          text NOT NULL,
    qty_open      numeric NOT NULL,
    price         numeric NOT NULL,           -- valuation price (limit/stop price, else the reference price)
    quote_rate    numeric NOT NULL,           -- quote currency -> policy currency
    leverage      numeric NOT NULL,           -- of the instrument class
    notional      numeric NOT NULL,           -- qty_open * price * quote_rate
    margin        numeric NOT NULL,           -- notional / leverage
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    released_at   timestamptz
);
CREATE INDEX risk_reservations_open_account ON risk_reservations (account) WHERE released_at IS NULL;
CREATE INDEX risk_reservations_open_client ON risk_reservations (client_id) WHERE released_at IS NULL;

-- Consecutive broker rejections per account and per broker (the circuit breaker).
CREATE TABLE risk_reject_streaks (
    scope      text NOT NULL CHECK (scope IN ('ACCOUNT', 'BROKER')),
    scope_key  text NOT NULL,
    streak     integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_key)
);

-- Equity marks for the daily loss limit (equity at the first check of the UTC day) and drawdown (peak).
CREATE TABLE risk_equity_marks (
    account      text NOT NULL,
    day          date NOT NULL,
    start_equity numeric NOT NULL,
    peak_equity  numeric NOT NULL,
    PRIMARY KEY (account, day)
);

-- Trading state scopes now include BROKER; index orders for the velocity and duplicate checks.
ALTER TABLE trading_state ADD CONSTRAINT trading_state_scope CHECK (scope IN ('GLOBAL', 'ACCOUNT', 'SYMBOL', 'BROKER'));
ALTER TABLE orders ADD COLUMN reduce_only boolean NOT NULL DEFAULT false;
CREATE INDEX orders_dup_guard ON orders (client_id, symbol, side, created_at DESC);
