-- The event stream (issue 16): every order event, trading-state change, break and unmatched report, as it is
-- booked, numbered by one sequence in commit order. GET /api/v1/stream reads this table (store/stream.py).
--
-- Commit order, not insert order. A number taken from a plain SEQUENCE at insert time is not enough: a booking
-- that takes 7 and commits after one that took 8 would be skipped by a reader that saw 8 and resumed after it.
-- So rows are captured by DEFERRED constraint triggers on the source tables: they run at COMMIT, after the
-- transaction's own statements, and take the number from the one-row counter ``stream_head``. Its row lock is
-- held until the transaction ends, so the next writer gets its number only after this one has committed (or
-- rolled back, which takes its numbers back with it): the numbers are gapless and become visible in order, and
-- a reader that has seen N has seen everything up to N. The cost is that the last instant of each writing
-- transaction (its deferred triggers and its commit) is serialized.
--
-- The writers (store/timeline.py, store/risk.py's set_trading_state, store/breaks.py) are unchanged: nothing
-- that writes these tables can forget the stream. NOTIFY exodus_stream (payload: the number) wakes every API
-- process's listener at commit; the table stays the source of truth (a listener that missed a notification
-- reads the same rows on its next wake-up or poll).

CREATE TABLE stream_head (
    one  boolean PRIMARY KEY DEFAULT true CHECK (one),
    seq  bigint NOT NULL
);
INSERT INTO stream_head (one, seq) VALUES (true, 0);

CREATE TABLE stream_events (
    seq        bigint PRIMARY KEY,
    booked_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- order | trading_state | break | unmatched
    topic      text NOT NULL,
    -- the order event's kind (ACCEPT, FILL...), TRADING_STATE, CIRCUIT_BREAKER, BREAK, BREAK_RESOLVED,
    -- UNMATCHED_REPORT
    kind       text NOT NULL,
    order_id   text,
    client_id  text,
    account    text,
    symbol     text,
    broker     text,
    data       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX stream_events_order ON stream_events (order_id, seq);

CREATE FUNCTION stream_append(p_topic text, p_kind text, p_order_id text, p_client_id text, p_account text,
                              p_symbol text, p_broker text, p_data jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    UPDATE stream_head SET seq = seq + 1 WHERE one RETURNING seq INTO s;
    INSERT INTO stream_events (seq, topic, kind, order_id, client_id, account, symbol, broker, data)
    VALUES (s, p_topic, p_kind, p_order_id, p_client_id, p_account, p_symbol, p_broker, p_data);
    PERFORM pg_notify('exodus_stream', s::text);
    RETURN s;
END;
$$;

CREATE FUNCTION stream_capture_order_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
BEGIN
    SELECT * INTO o FROM orders WHERE order_id = NEW.order_id;
    PERFORM stream_append('order', NEW.kind, NEW.order_id, o.client_id, o.account, o.symbol, o.broker,
        jsonb_build_object(
            'orderSeq', NEW.seq, 'at', NEW.at, 'status', NEW.status, 'detail', NEW.detail, 'actor', NEW.actor,
            'data', NEW.data,
            'order', jsonb_build_object(
                'clientOrderId', o.client_order_id, 'side', o.side, 'type', o.type, 'qty', o.qty::text,
                'price', o.price::text, 'stopPrice', o.stop_price::text, 'status', o.status,
                'filledQty', o.filled_qty::text, 'avgPrice', o.avg_price::text, 'version', o.version,
                'brokerOrderId', o.broker_order_id)));
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER stream_order_events AFTER INSERT OR UPDATE ON order_events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stream_capture_order_event();

CREATE FUNCTION stream_capture_trading_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stream_append('trading_state',
        CASE WHEN NEW.updated_by = 'circuit-breaker' THEN 'CIRCUIT_BREAKER' ELSE 'TRADING_STATE' END,
        NULL, NULL,
        CASE WHEN NEW.scope = 'ACCOUNT' THEN NEW.scope_key END,
        CASE WHEN NEW.scope = 'SYMBOL' THEN NEW.scope_key END,
        CASE WHEN NEW.scope = 'BROKER' THEN NEW.scope_key END,
        jsonb_build_object('scope', NEW.scope, 'key', NEW.scope_key, 'state', NEW.state, 'reason', NEW.reason,
            'updatedBy', NEW.updated_by, 'at', NEW.updated_at));
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER stream_trading_state AFTER INSERT OR UPDATE ON trading_state
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stream_capture_trading_state();

CREATE FUNCTION stream_capture_break() RETURNS trigger
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
            'detectedAt', NEW.detected_at, 'resolvedAt', NEW.resolved_at));
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER stream_breaks AFTER INSERT OR UPDATE ON reconciliation_breaks
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stream_capture_break();

CREATE FUNCTION stream_capture_unmatched() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM stream_append('unmatched', 'UNMATCHED_REPORT', NULL, NULL, NULL, NULL, NEW.broker,
        jsonb_build_object('execId', NEW.exec_id, 'clientOrderId', NEW.client_order_id, 'reason', NEW.reason,
            'receivedAt', NEW.received_at));
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER stream_unmatched AFTER INSERT ON unmatched_reports
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION stream_capture_unmatched();
