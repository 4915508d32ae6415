-- The FIX adapter's own records, per FIX session ("FIX.4.4:EXODUS->EXVENUE"):
--   fix_orders   every order sent over the session, with the terms and the status last heard of; the open
--                ones are asked about (OrderStatusRequest) after every logon;
--   fix_reports  every ExecutionReport / OrderCancelReject received, once per ExecID, with its delivery to
--                the order workflow (delivered_at), so a restart re-delivers what was received but not yet
--                delivered and a status answer can carry the order's fills.

CREATE TABLE fix_orders (
    session          text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    broker_order_id  text,
    status           text NOT NULL,
    open             boolean NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session, order_id)
);
CREATE INDEX fix_orders_open ON fix_orders (session) WHERE open;

CREATE TABLE fix_reports (
    session          text NOT NULL,
    exec_id          text NOT NULL,
    -- arrival order
    seq              bigserial,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    kind             text NOT NULL,
    body             jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (session, exec_id)
);
CREATE INDEX fix_reports_order ON fix_reports (session, order_id, seq);
CREATE INDEX fix_reports_undelivered ON fix_reports (session, seq) WHERE delivered_at IS NULL;
