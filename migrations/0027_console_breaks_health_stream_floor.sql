-- The console's remaining pages (issue 16) and the stream's retention.
--
-- Breaks and unmatched reports are resolved by a person, with a reason (store/breaks.py; POST
-- /api/v1/breaks/{id}/resolve and /api/v1/unmatched-reports/{id}/resolve, audited). Unmatched reports get an id of
-- their own (their key, broker and exec id, is two texts chosen by brokers) and a resolution; resolving one is
-- announced on the stream as UNMATCHED_RESOLVED, as resolving a break is as BREAK_RESOLVED (now with who and why).

ALTER TABLE reconciliation_breaks ADD COLUMN resolved_by text, ADD COLUMN resolution text;
CREATE INDEX reconciliation_breaks_open ON reconciliation_breaks (id) WHERE resolved_at IS NULL;
CREATE INDEX reconciliation_breaks_order ON reconciliation_breaks (order_id);

ALTER TABLE unmatched_reports ADD COLUMN id bigserial, ADD COLUMN resolved_at timestamptz,
    ADD COLUMN resolved_by text, ADD COLUMN resolution text;
CREATE UNIQUE INDEX unmatched_reports_id ON unmatched_reports (id);

CREATE OR REPLACE FUNCTION stream_capture_break() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND NOT (OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF NEW.order_id IS NOT NULL THEN
        SELECT * INTO o FROM orders WHERE order_id = NEW.order_id;
    END IF;
    PERFORM stream_append('break', CASE WHEN TG_OP = 'INSERT' THEN 'BREAK' ELSE 'BREAK_RESOLVED' END,
        NEW.order_id, o.client_id, o.account, o.symbol, NEW.broker,
        jsonb_build_object('id', NEW.id, 'breakKind', NEW.kind, 'detail', NEW.detail,
            'detectedAt', NEW.detected_at, 'resolvedAt', NEW.resolved_at, 'resolvedBy', NEW.resolved_by,
            'resolution', NEW.resolution));
    RETURN NULL;
END;
$$;

CREATE FUNCTION stream_capture_unmatched_resolved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT (OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    PERFORM stream_append('unmatched', 'UNMATCHED_RESOLVED', NULL, NULL, NULL, NULL, NEW.broker,
        jsonb_build_object('id', NEW.id, 'execId', NEW.exec_id, 'clientOrderId', NEW.client_order_id,
            'reason', NEW.reason, 'receivedAt', NEW.received_at, 'resolvedAt', NEW.resolved_at,
            'resolvedBy', NEW.resolved_by, 'resolution', NEW.resolution));
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER stream_unmatched_resolved AFTER UPDATE ON unmatched_reports
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stream_capture_unmatched_resolved();

-- Broker health: REST brokers record when a call last succeeded (written with the session's heartbeat).
ALTER TABLE broker_sessions ADD COLUMN last_call_at timestamptz;

-- The stream's retention (store/stream.py ``prune``): rows older than EXODUS_STREAM__RETENTION_HOURS are deleted
-- from the start, and ``stream_floor`` says up to which number they may be gone, so a client resuming from below
-- it is told (410, or a ``reset`` message) instead of silently missing events. Its own row, not stream_head's:
-- the head's row lock serializes every booking's commit, and a prune must not hold it.
CREATE TABLE stream_floor (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint NOT NULL
);
INSERT INTO stream_floor (one, seq) VALUES (true, 0);
