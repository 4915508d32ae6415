-- An amend's hold (the larger of the old and the new terms, taken by its risk check) records the version of the
-- order (its event count) that the check was made for. A booking of that version or an older one (the workflow's
-- flusher may have had one in flight while the check ran, and commit after it) leaves the hold alone; only the
-- booking of a newer state (the amend's own events, the broker's answer) sets the reservation to the order's
-- terms (activities/persistence.py). risk_record is 0011's, with hold_version set by an amend.
ALTER TABLE risk_reservations ADD COLUMN hold_version integer;
COMMENT ON COLUMN risk_reservations.hold_version IS
    'an amend''s hold: the order version its risk check was made for; bookings up to it leave the terms alone';

CREATE OR REPLACE FUNCTION risk_record(p jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o jsonb := p->'order';
    r jsonb := p->'reserve';
    m jsonb := p->'marks';
    a jsonb := p->'audit';
    seen jsonb := p->'seen';
    now_version bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1381190465, hashtext(p->>'account'));  -- "RSKA"
    PERFORM pg_advisory_xact_lock(1381190467, hashtext(p->>'client'));   -- "RSKC"
    UPDATE risk_serial SET version = version + 1 WHERE scope = 'ACCOUNT' AND key = p->>'account'
        RETURNING version INTO now_version;
    IF NOT FOUND THEN
        INSERT INTO risk_serial (scope, key, version) VALUES ('ACCOUNT', p->>'account', 1)
            ON CONFLICT (scope, key) DO UPDATE SET version = risk_serial.version + 1 RETURNING version INTO now_version;
    END IF;
    IF seen IS NOT NULL AND now_version <> (seen->>'account')::bigint + 1 THEN
        RAISE EXCEPTION 'exodus-risk-retry' USING DETAIL = 'account ' || (p->>'account');
    END IF;
    UPDATE risk_serial SET version = version + 1 WHERE scope = 'CLIENT' AND key = p->>'client'
        RETURNING version INTO now_version;
    IF NOT FOUND THEN
        INSERT INTO risk_serial (scope, key, version) VALUES ('CLIENT', p->>'client', 1)
            ON CONFLICT (scope, key) DO UPDATE SET version = risk_serial.version + 1 RETURNING version INTO now_version;
    END IF;
    IF seen IS NOT NULL AND now_version <> (seen->>'client')::bigint + 1 THEN
        RAISE EXCEPTION 'exodus-risk-retry' USING DETAIL = 'client ' || (p->>'client');
    END IF;
    IF m IS NOT NULL AND jsonb_typeof(m) = 'object' THEN
        INSERT INTO risk_equity_marks (account, day, start_equity, peak_equity)
            VALUES (m->>'account', (m->>'day')::date, (m->>'start')::numeric, (m->>'peak')::numeric)
            ON CONFLICT (account, day) DO UPDATE
                SET peak_equity = GREATEST(risk_equity_marks.peak_equity, EXCLUDED.peak_equity);
    END IF;
    IF o IS NOT NULL AND jsonb_typeof(o) = 'object' THEN
        INSERT INTO orders (order_id, workflow_id, idempotency_key, request_hash, client_id, client_order_id,
            account, symbol, side, type, time_in_force, qty, price, stop_price, expire_at, reduce_only, broker,
            status, reason, risk_decision, version, created_at, updated_at)
        VALUES (o->>'order_id', o->>'workflow_id', o->>'idempotency_key', o->>'request_hash', o->>'client_id',
            o->>'client_order_id', o->>'account', o->>'symbol', o->>'side', o->>'type', o->>'time_in_force',
            (o->>'qty')::numeric, (o->>'price')::numeric, (o->>'stop_price')::numeric,
            (o->>'expire_at')::timestamptz, (o->>'reduce_only')::boolean, o->>'broker', 'RECEIVED', o->>'reason',
            o->'risk_decision', 0, (o->>'received_at')::timestamptz, (o->>'received_at')::timestamptz)
        ON CONFLICT (order_id) DO UPDATE SET risk_decision = EXCLUDED.risk_decision
            WHERE orders.risk_decision IS NULL;
    END IF;
    IF r IS NOT NULL AND jsonb_typeof(r) = 'object' THEN
        IF (r->>'amend')::boolean THEN
            -- An amend holds the larger of its old and new terms until the broker answers; the booking of a state
            -- newer than the one checked (hold_version) sets the real terms (activities/persistence.py).
            UPDATE risk_reservations SET
                qty_open = GREATEST(qty_open, (r->>'qty')::numeric),
                price = GREATEST(price, (r->>'price')::numeric),
                notional = GREATEST(qty_open, (r->>'qty')::numeric) * GREATEST(price, (r->>'price')::numeric)
                    * quote_rate,
                margin = GREATEST(qty_open, (r->>'qty')::numeric) * GREATEST(price, (r->>'price')::numeric)
                    * quote_rate / leverage,
                broker = coalesce(broker, r->>'broker'),
                hold_version = GREATEST(hold_version, (r->>'version')::integer),
                updated_at = now()
            WHERE order_id = r->>'order_id' AND released_at IS NULL;
        ELSE
            INSERT INTO risk_reservations (order_id, account, client_id, symbol, side, qty_open, price, quote_rate,
                leverage, notional, margin, broker)
            VALUES (r->>'order_id', r->>'account', r->>'client_id', r->>'symbol', r->>'side',
                (r->>'qty')::numeric, (r->>'price')::numeric, (r->>'rate')::numeric, (r->>'leverage')::numeric,
                (r->>'qty')::numeric * (r->>'price')::numeric * (r->>'rate')::numeric,
                (r->>'qty')::numeric * (r->>'price')::numeric * (r->>'rate')::numeric / (r->>'leverage')::numeric,
                r->>'broker')
            ON CONFLICT (order_id) DO NOTHING;
        END IF;
    END IF;
    -- Last, the rows every decision of the firm takes (totals, velocity, the audit chain): they are held from
    -- here to the end of the commit, so everything that concerns only this account is done before.
    IF p->'counters' IS NOT NULL AND jsonb_typeof(p->'counters') = 'object' THEN
        PERFORM risk_take(p->'counters', false);
    END IF;
    IF a IS NOT NULL AND jsonb_typeof(a) = 'object' THEN
        PERFORM audit_append((a->>'at')::timestamptz, a->>'actor', a->>'action', a->>'subject', a->'detail',
            a->>'rest');
    END IF;
END;
$$;
