-- The Kraken adapter's own records (brokers/kraken/store.py), per broker name ("kraken"):
--   kraken_orders  every order sent, with the cl_ord_id Kraken knows it by (kept through amends), its txid once
--                  Kraken answered, the terms and the status last heard of, and a replace (AmendOrder) whose answer
--                  is still unknown; the open ones are polled;
--   kraken_nonces  the nonce ceiling reserved per API key: a restarted adapter starts above it, so nonces strictly
--                  increase across restarts even if the clock went back.
-- Reports are in the shared journal (broker_reports); a fill's exec id is Kraken's trade txid.

CREATE TABLE kraken_orders (
    broker           text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    cl_ord_id        text NOT NULL,
    txid             text,
    status           text NOT NULL,
    open             boolean NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, order_id)
);
CREATE INDEX kraken_orders_open ON kraken_orders (broker, created_at) WHERE open;
CREATE INDEX kraken_orders_txid ON kraken_orders (broker, txid);
CREATE INDEX kraken_orders_cl_ord_id ON kraken_orders (broker, cl_ord_id);

CREATE TABLE kraken_nonces (
    broker           text NOT NULL,
    key_id           text NOT NULL,
    ceiling          bigint NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, key_id)
);
