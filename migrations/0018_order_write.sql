-- One writer of the order row (issue 19). The row has one shape: store/orders.py's ``OrderRow`` (a TypedDict
-- with every column of ``orders``; tests/store/test_orders.py compares it with the table). Both writers build
-- it in Python and send it here as one JSON document, and this function is the only statement that inserts
-- into ``orders``: the risk decision (``risk_record``, below, for a new order) and the workflow's booking
-- (store.orders.write_order, from activities/persistence.py). Its column list is the table's own row type
-- (``jsonb_populate_record(NULL::orders, o)``): a key missing from the document is NULL, so a NOT NULL column
-- that a writer forgot fails loudly instead of taking a default.
--
-- The two writers differ only in what they change of a row that exists:
--   the decision (p_booking false): only its decision, and only while the row has none (the row's terms and
--     status belong to the workflow's bookings from then on);
--   a booking (p_booking true): the order's progress, only forward (version) and only for the terms the row
--     holds (request_hash); the decision the workflow acted on, when it carries one.

CREATE FUNCTION order_write(o jsonb, p_booking boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_booking THEN
        INSERT INTO orders SELECT * FROM jsonb_populate_record(NULL::orders, o)
        ON CONFLICT (order_id) DO UPDATE SET
            risk_decision = COALESCE(EXCLUDED.risk_decision, orders.risk_decision),
            qty = EXCLUDED.qty, price = EXCLUDED.price, stop_price = EXCLUDED.stop_price,
            broker_order_id = EXCLUDED.broker_order_id, status = EXCLUDED.status, filled_qty = EXCLUDED.filled_qty,
            avg_price = EXCLUDED.avg_price, reason = EXCLUDED.reason, flags = EXCLUDED.flags,
            version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
        WHERE orders.version <= EXCLUDED.version AND orders.request_hash = EXCLUDED.request_hash;
    ELSE
        INSERT INTO orders SELECT * FROM jsonb_populate_record(NULL::orders, o)
        ON CONFLICT (order_id) DO UPDATE SET risk_decision = EXCLUDED.risk_decision
            WHERE orders.risk_decision IS NULL;
    END IF;
END;
$$;

-- risk_record is 0014_risk_record_closed_orders's, with its own INSERT INTO orders replaced by order_write.
CREATE OR REPLACE FUNCTION risk_record(p jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o jsonb := p->'order';
    r jsonb := p->'reserve';
    m jsonb := p->'marks';
    a jsonb := p->'audit';
    seen jsonb := p->'seen';
    now_version bigint;
    existing record;
BEGIN
    PERFORM pg_advisory_xact_lock(1381190465, hashtext(p->>'account'));  -- "RSKA"
    PERFORM pg_advisory_xact_lock(1381190467, hashtext(p->>'client'));   -- "RSKC"
    IF o IS NOT NULL AND jsonb_typeof(o) = 'object' THEN
        -- Locked until the commit: a booking of the order waits for this decision, and this one sees it whole.
        SELECT x.status, x.request_hash, x.version INTO existing
            FROM orders x WHERE x.order_id = o->>'order_id' FOR UPDATE;
        IF FOUND AND (existing.request_hash IS DISTINCT FROM o->>'request_hash' OR existing.version > 0
                OR existing.status IN ('DENIED', 'REJECTED', 'FILLED', 'CANCELED', 'EXPIRED')) THEN
            RAISE EXCEPTION 'exodus-risk-closed' USING DETAIL = json_build_object('status', existing.status,
                'request_hash', existing.request_hash, 'version', existing.version)::text;
        END IF;
    END IF;
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
        PERFORM order_write(o, false);  -- the one writer of the order row (above)
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
