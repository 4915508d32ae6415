-- Order lists in Postgres (issue 15): the read model of a list, written by its coordinator (a local activity,
-- patch list-read-model) whenever the list's state changes. GET /api/v1/order-lists/{id} answers from this row
-- (after Temporal's retention, with the worker down); scope is enforced from client_id, account and broker.
-- ``book`` is core.orderlist.ListBook as JSON; ``version`` grows with every write, so a late write never
-- replaces a newer one.
CREATE TABLE IF NOT EXISTS order_lists (
    list_id        text PRIMARY KEY,
    workflow_id    text NOT NULL,
    client_id      text NOT NULL,
    client_list_id text NOT NULL,
    account        text NOT NULL,
    broker         text NOT NULL,
    contingency    text NOT NULL,
    status         text NOT NULL,
    version        bigint NOT NULL,
    book           jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_lists_client ON order_lists (client_id, updated_at DESC);
