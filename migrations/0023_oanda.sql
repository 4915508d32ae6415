-- The OANDA adapter's own records (brokers/oanda/store.py), per broker name ("oanda"):
--   oanda_orders  every order sent (the base order id, the client order id of the current order of its replace
--                 chain, OANDA's id of it, the total quantity): a second submission of a client order id that is
--                 here is looked up at OANDA (and in its transactions) before anything is sent again, since OANDA
--                 refuses a reused client id only while the first order is still pending;
--   oanda_cursor  the last transaction id the adapter has read without a gap (GET .../transactions/sinceid): every
--                 catch-up starts after it, so nothing that happened while the stream was down is missed.
-- Reports are in the shared journal broker_reports (0019), exec id = OANDA's transaction id, ref = OANDA order id.

CREATE TABLE oanda_orders (
    broker           text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    oanda_id         text,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, order_id)
);

CREATE TABLE oanda_cursor (
    broker               text PRIMARY KEY,
    last_transaction_id  bigint NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
