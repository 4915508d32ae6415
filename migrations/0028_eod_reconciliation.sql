-- End-of-day reconciliation (issue 17): one report per run, and breaks acknowledged before they are resolved.
--
-- A run (workflows/reconciliation.py) compares a broker's positions, its fills of one UTC day and its open orders
-- with the ledger and the order read model; every difference is kept in the run's report (``differences``) and
-- opens a break unless the same one (broker, kind, ref) is still open, so a second run of the day opens nothing.
-- ``ref`` is the difference's natural key: ``account/symbol`` for a position, the exec id for a fill, the
-- cl_ord_id for an order.
--
-- A break's lifecycle: open -> acknowledged (who, when, a note) -> resolved (who, when, why); each step audited
-- by the API and announced on the stream (BREAK_ACKNOWLEDGED beside BREAK and BREAK_RESOLVED).

ALTER TABLE reconciliation_breaks ADD COLUMN ref text, ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text, ADD COLUMN acknowledgement text;
CREATE UNIQUE INDEX reconciliation_breaks_open_ref ON reconciliation_breaks (broker, kind, ref)
    WHERE resolved_at IS NULL AND ref IS NOT NULL;

CREATE TABLE reconciliation_runs (
    -- the Temporal workflow id and run id of the run
    workflow_id  text NOT NULL,
    run_id       text NOT NULL,
    broker       text NOT NULL,
    day          date NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    -- what the broker could report and was compared: positions, fills, orders
    compared     text[] NOT NULL,
    -- differences per kind, and how many of them opened a new break
    counts       jsonb NOT NULL,
    new_breaks   integer NOT NULL,
    -- every difference: {kind, ref, orderId, account, symbol, detail, breakId, new}
    differences  jsonb NOT NULL,
    PRIMARY KEY (workflow_id, run_id)
);
CREATE INDEX reconciliation_runs_broker_day ON reconciliation_runs (broker, day DESC, finished_at DESC);
CREATE INDEX reconciliation_runs_finished ON reconciliation_runs (finished_at DESC);

CREATE OR REPLACE FUNCTION stream_capture_break() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
    kind text;
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := 'BREAK';
    ELSIF OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL THEN
        kind := 'BREAK_RESOLVED';
    ELSIF OLD.acknowledged_at IS NULL AND NEW.acknowledged_at IS NOT NULL THEN
        kind := 'BREAK_ACKNOWLEDGED';
    ELSE
        RETURN NULL;
    END IF;
    IF NEW.order_id IS NOT NULL THEN
        SELECT * INTO o FROM orders WHERE order_id = NEW.order_id;
    END IF;
    PERFORM stream_append('break', kind,
        NEW.order_id, o.client_id, o.account, o.symbol, NEW.broker,
        jsonb_build_object('id', NEW.id, 'breakKind', NEW.kind, 'detail', NEW.detail,
            'detectedAt', NEW.detected_at, 'resolvedAt', NEW.resolved_at, 'resolvedBy', NEW.resolved_by,
            'resolution', NEW.resolution, 'acknowledgedAt', NEW.acknowledged_at,
            'acknowledgedBy', NEW.acknowledged_by, 'acknowledgement', NEW.acknowledgement));
    RETURN NULL;
END;
$$;
