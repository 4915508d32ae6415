-- The state of each stateful broker session (a FIX session today), written by the worker that owns it and
-- read by the risk check: new orders are refused while the session is down (working orders stay in flight).
CREATE TABLE broker_sessions (
    broker        text PRIMARY KEY,
    session       text NOT NULL,
    logged_on     boolean NOT NULL,
    detail        text NOT NULL DEFAULT '',
    changed_at    timestamptz NOT NULL DEFAULT now(),   -- when logged_on last changed
    heartbeat_at  timestamptz NOT NULL DEFAULT now()    -- refreshed while the owning worker runs
);
