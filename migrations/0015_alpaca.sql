-- The Alpaca adapter's own records (brokers/alpaca/store.py), per broker name ("alpaca"):
--   alpaca_orders     every order sent, with the terms and the status last heard of; the open ones are looked up
--                     after every reconnect of the trade_updates stream (REST catch-up);
--   alpaca_order_ids  every Alpaca order id of an order's replace chain (a PATCH gives a new id), so that a fill
--                     activity naming an Alpaca order id finds its Exodus order;
--   alpaca_reports    every report derived from the stream or the REST catch-up, once per exec id, with its delivery
--                     to the order workflow (delivered_at), so a restart re-delivers what was not yet delivered.
-- A fill's exec id is "<alpaca order id>:<that order's filled_qty after it>", the same whichever way it arrived.

CREATE TABLE alpaca_orders (
    broker           text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    alpaca_id        text,
    status           text NOT NULL,
    open             boolean NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, order_id)
);
CREATE INDEX alpaca_orders_open ON alpaca_orders (broker, created_at) WHERE open;

CREATE TABLE alpaca_order_ids (
    broker           text NOT NULL,
    alpaca_id        text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    PRIMARY KEY (broker, alpaca_id)
);

CREATE TABLE alpaca_reports (
    broker           text NOT NULL,
    exec_id          text NOT NULL,
    seq              bigserial,
    order_id         text NOT NULL,
    alpaca_id        text,
    kind             text NOT NULL,
    -- where it came from: "stream:<event>", "activity:<activity id>", "status", "answer"
    source           text NOT NULL,
    body             jsonb NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    PRIMARY KEY (broker, exec_id)
);
CREATE INDEX alpaca_reports_order ON alpaca_reports (broker, order_id, seq);
CREATE INDEX alpaca_reports_undelivered ON alpaca_reports (broker, seq) WHERE delivered_at IS NULL;
