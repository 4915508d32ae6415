-- The Interactive Brokers adapter's own records (brokers/ib/store.py), per broker name ("ib"):
--   ib_orders          every order sent: the API order id it was placed under, IB's permId once known, the client
--                      order id its orderRef carries now (a modification changes it), the status last heard of and a
--                      reject reason read from IB's error event (IB reports a reject as "Cancelled");
--   ib_order_id_marks  the highest API order id ever used per TWS/Gateway session and client id: IB refuses an id
--                      at or below one already used (error 103), and a restarted Gateway's nextValidId can roll back,
--                      so the next id is above both.
-- Reports are in the shared journal (broker_reports, migration 0019); fills under IB's execId.

CREATE TABLE ib_orders (
    broker           text NOT NULL,
    order_id         text NOT NULL,
    client_order_id  text NOT NULL,
    ib_order_id      bigint NOT NULL,
    perm_id          bigint,
    status           text NOT NULL,
    open             boolean NOT NULL,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, order_id)
);
CREATE INDEX ib_orders_open ON ib_orders (broker, created_at) WHERE open;
CREATE INDEX ib_orders_ib_id ON ib_orders (broker, ib_order_id);

CREATE TABLE ib_order_id_marks (
    broker      text NOT NULL,
    session     text NOT NULL,
    last_id     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (broker, session)
);
