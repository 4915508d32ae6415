-- Authorization (issue 9): API keys, stored hashed, and the registry of accounts orders may name.

-- One row per API key. The key handed out is exo_<key_id>_<secret>; only sha256(secret) is kept.
CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  text NOT NULL,
    roles        text[] NOT NULL,
    -- {"clients": "*" | [...], "accounts": "*" | [...], "brokers": "*" | [...]}
    scope        jsonb NOT NULL,
    tenant       text NOT NULL,
    description  text NOT NULL DEFAULT '',
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- A key stops working at expires_at (set by rotation with a grace period) or once revoked.
    expires_at   timestamptz,
    revoked_at   timestamptz,
    revoked_by   text,
    -- The key this one replaced (rotation keeps name, roles, scope and tenant).
    rotated_from text REFERENCES api_keys (key_id)
);
CREATE INDEX api_keys_name ON api_keys (name);

-- Accounts exist only if registered: an order for any other account is refused (UNKNOWN_ACCOUNT).
CREATE TABLE accounts (
    account         text PRIMARY KEY,
    -- The one broker the account trades through; NULL: any broker.
    broker          text,
    -- The account at the broker it maps to (FIX Account, MT5 login, ...); NULL: the same name.
    broker_account  text,
    description     text NOT NULL DEFAULT '',
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
