-- Risk decisions without one global lock: per-account serialization (advisory locks, taken by the risk
-- activity) and counter rows for everything that spans accounts, taken in the decision's own transaction by
-- risk_take(): the firm-wide and per-broker exposure totals and the per-symbol and global velocity.

-- Which broker a working order is at (per-broker limits).
ALTER TABLE risk_reservations ADD COLUMN broker text;
UPDATE risk_reservations r SET broker = o.broker FROM orders o WHERE o.order_id = r.order_id AND r.broker IS NULL;

-- Totals across accounts: the firm (scope_key '') and each broker. Each total is the sum of the accounts'
-- contributions below; a decision replaces its account's contribution and the totals together, under the
-- total's row lock, so two decisions never both fit into the same room.
CREATE TABLE risk_counters (
    scope          text NOT NULL CHECK (scope IN ('FIRM', 'BROKER')),
    scope_key      text NOT NULL DEFAULT '',
    gross          numeric NOT NULL DEFAULT 0,   -- worst-case gross exposure (policy currency)
    open_notional  numeric NOT NULL DEFAULT 0,   -- notional of working orders (policy currency)
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, scope_key)
);
INSERT INTO risk_counters (scope, scope_key) VALUES ('FIRM', '');

-- One account's part of each total, as its latest decision computed it (under the account's lock). Fills and
-- cancels only shrink an account's worst case, so between its decisions a contribution errs on the high side.
CREATE TABLE risk_contributions (
    account        text NOT NULL,
    scope          text NOT NULL,
    scope_key      text NOT NULL DEFAULT '',
    gross          numeric NOT NULL DEFAULT 0,
    open_notional  numeric NOT NULL DEFAULT 0,
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, scope, scope_key)
);

-- Orders already working when this migration runs: their notional (gross exposure is valued at the marks,
-- which only the worker has; an account's contribution is exact from its first decision on).
INSERT INTO risk_contributions (account, scope, scope_key, gross, open_notional)
SELECT account, 'FIRM', '', sum(notional), sum(notional) FROM risk_reservations WHERE released_at IS NULL
GROUP BY account;
INSERT INTO risk_contributions (account, scope, scope_key, gross, open_notional)
SELECT account, 'BROKER', coalesce(broker, ''), 0, sum(notional) FROM risk_reservations WHERE released_at IS NULL
GROUP BY account, coalesce(broker, '');
INSERT INTO risk_counters (scope, scope_key, gross, open_notional)
SELECT scope, scope_key, sum(gross), sum(open_notional) FROM risk_contributions GROUP BY scope, scope_key
ON CONFLICT (scope, scope_key) DO UPDATE SET gross = EXCLUDED.gross, open_notional = EXCLUDED.open_notional;
-- (Stale from the start: recomputed at the account's next decision, or when a total is found full.)
UPDATE risk_contributions SET computed_at = '-infinity';
CREATE INDEX risk_reservations_account_updated ON risk_reservations (account, updated_at);

-- Order counts of a sliding window, per symbol and overall: 11 buckets of a tenth of the window each
-- (counts[11] is bucket ``head``). The window's count is the sum of all 11, which covers the window and at
-- most one bucket more: it never counts fewer orders than the window holds. When a policy changes the window,
-- the orders counted so far are carried into the newest bucket (counted for one more window, not forgotten).
CREATE TABLE risk_velocity (
    scope      text NOT NULL CHECK (scope IN ('GLOBAL', 'SYMBOL')),
    scope_key  text NOT NULL DEFAULT '',
    width_ms   bigint NOT NULL,
    head       bigint NOT NULL,
    counts     integer[] NOT NULL,
    total      bigint NOT NULL,                -- sum(counts)
    PRIMARY KEY (scope, scope_key)
);

-- Take the counters of one decision, atomically, in the caller's transaction.
--
-- p = {"account": ..., "approved": bool, "at_ms": epoch ms of the order,
--      "exposure": [{"scope", "key", "gross_with", "gross_without", "notional_with", "notional_without",
--                    "gross_limit", "notional_limit", "gross_code", "notional_code"}],
--      "velocity": [{"scope", "key", "window_ms", "max", "code"}]}
--
-- Rows are locked in one order (exposure totals by scope and key, then velocity rows by scope and key), so
-- concurrent decisions cannot deadlock. If the caller approved the order, every limit is checked against the
-- totals with this account's contribution replaced by ``*_with`` (an order that does not add to a total is
-- never refused by it). A breach raises 'exodus-risk-limit' (DETAIL: the breaches) unless ``careful``, which
-- returns the breaches instead and records the account as without the order. Velocity counts every new
-- order, approved or not.
CREATE FUNCTION risk_take(p jsonb, careful boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    approved boolean := coalesce((p->>'approved')::boolean, false);
    acct text := p->>'account';
    at_ms bigint := (p->>'at_ms')::bigint;
    breaches jsonb := '[]'::jsonb;
    e jsonb;
    v jsonb;
    scopes text[] := '{}';
    keys text[] := '{}';
    olds_g numeric[] := '{}';
    olds_n numeric[] := '{}';
    withs_g numeric[] := '{}';
    withs_n numeric[] := '{}';
    withouts_g numeric[] := '{}';
    withouts_n numeric[] := '{}';
    tot_g numeric;
    tot_n numeric;
    old_g numeric;
    old_n numeric;
    g_with numeric;
    g_without numeric;
    n_with numeric;
    n_without numeric;
    lim numeric;
    width bigint;
    b bigint;
    h bigint;
    w bigint;
    cnt integer[];
    n bigint;
    d bigint;
    slot integer;
    ok boolean;
    new_g numeric;
    new_n numeric;
BEGIN
    FOR e IN SELECT x FROM jsonb_array_elements(coalesce(p->'exposure', '[]'::jsonb)) AS x
             ORDER BY x->>'scope', x->>'key' LOOP
        SELECT c.gross, c.open_notional, r.gross, r.open_notional INTO tot_g, tot_n, old_g, old_n
            FROM risk_counters c LEFT JOIN risk_contributions r
              ON r.account = acct AND r.scope = c.scope AND r.scope_key = c.scope_key
            WHERE c.scope = e->>'scope' AND c.scope_key = e->>'key' FOR UPDATE OF c;
        IF NOT FOUND THEN
            INSERT INTO risk_counters (scope, scope_key) VALUES (e->>'scope', e->>'key') ON CONFLICT DO NOTHING;
            SELECT c.gross, c.open_notional, r.gross, r.open_notional INTO tot_g, tot_n, old_g, old_n
                FROM risk_counters c LEFT JOIN risk_contributions r
                  ON r.account = acct AND r.scope = c.scope AND r.scope_key = c.scope_key
                WHERE c.scope = e->>'scope' AND c.scope_key = e->>'key' FOR UPDATE OF c;
        END IF;
        old_g := coalesce(old_g, 0);
        old_n := coalesce(old_n, 0);
        g_with := coalesce((e->>'gross_with')::numeric, 0);
        g_without := coalesce((e->>'gross_without')::numeric, 0);
        n_with := coalesce((e->>'notional_with')::numeric, 0);
        n_without := coalesce((e->>'notional_without')::numeric, 0);
        IF approved THEN
            lim := (e->>'gross_limit')::numeric;
            IF lim IS NOT NULL AND g_with > g_without AND tot_g - old_g + g_with > lim THEN
                breaches := breaches || jsonb_build_object('code', e->>'gross_code', 'scope', e->>'scope',
                    'key', e->>'key', 'total', tot_g - old_g + g_with, 'others', tot_g - old_g, 'limit', lim);
            END IF;
            lim := (e->>'notional_limit')::numeric;
            IF lim IS NOT NULL AND n_with > n_without AND tot_n - old_n + n_with > lim THEN
                breaches := breaches || jsonb_build_object('code', e->>'notional_code', 'scope', e->>'scope',
                    'key', e->>'key', 'total', tot_n - old_n + n_with, 'others', tot_n - old_n, 'limit', lim);
            END IF;
        END IF;
        scopes := scopes || (e->>'scope');
        keys := keys || (e->>'key');
        olds_g := olds_g || old_g;
        olds_n := olds_n || old_n;
        withs_g := withs_g || g_with;
        withs_n := withs_n || n_with;
        withouts_g := withouts_g || g_without;
        withouts_n := withouts_n || n_without;
    END LOOP;

    FOR v IN SELECT x FROM jsonb_array_elements(coalesce(p->'velocity', '[]'::jsonb)) AS x
             ORDER BY x->>'scope', x->>'key' LOOP
        width := greatest(1, (v->>'window_ms')::bigint / 10);
        b := at_ms / width;
        -- Most orders land in the newest bucket: count them in one statement.
        UPDATE risk_velocity r SET counts[11] = r.counts[11] + 1, total = r.total + 1
            WHERE r.scope = v->>'scope' AND r.scope_key = v->>'key' AND r.width_ms = width AND r.head = b
            RETURNING r.total - 1 INTO n;
        IF NOT FOUND THEN
            SELECT r.width_ms, r.head, r.counts INTO w, h, cnt FROM risk_velocity r
                WHERE r.scope = v->>'scope' AND r.scope_key = v->>'key' FOR UPDATE;
            IF NOT FOUND THEN
                INSERT INTO risk_velocity (scope, scope_key, width_ms, head, counts, total)
                    VALUES (v->>'scope', v->>'key', width, b, array_fill(0, ARRAY[11]), 0) ON CONFLICT DO NOTHING;
                SELECT r.width_ms, r.head, r.counts INTO w, h, cnt FROM risk_velocity r
                    WHERE r.scope = v->>'scope' AND r.scope_key = v->>'key' FOR UPDATE;
            END IF;
            IF w <> width THEN  -- the window changed: what was counted stays counted, as of now
                SELECT coalesce(sum(x), 0) INTO n FROM unnest(cnt) AS x;
                cnt := array_fill(0, ARRAY[11]);
                cnt[11] := n;
                h := greatest(h, b);
            END IF;
            IF b > h THEN
                d := b - h;
                IF d >= 11 THEN
                    cnt := array_fill(0, ARRAY[11]);
                ELSE
                    cnt := cnt[d + 1:11] || array_fill(0, ARRAY[d::integer]);
                END IF;
                h := b;
            END IF;
            SELECT coalesce(sum(x), 0) INTO n FROM unnest(cnt) AS x;
            slot := 11 - (h - b)::integer;
            IF slot >= 1 THEN
                cnt[slot] := cnt[slot] + 1;
            END IF;
            UPDATE risk_velocity SET width_ms = width, head = h, counts = cnt,
                total = n + CASE WHEN slot >= 1 THEN 1 ELSE 0 END
                WHERE scope = v->>'scope' AND scope_key = v->>'key';
        END IF;
        IF approved AND n >= (v->>'max')::bigint THEN
            breaches := breaches || jsonb_build_object('code', v->>'code', 'scope', v->>'scope', 'key', v->>'key',
                'count', n, 'max', (v->>'max')::bigint, 'window_ms', (v->>'window_ms')::bigint);
        END IF;
    END LOOP;

    IF jsonb_array_length(breaches) > 0 AND NOT careful THEN
        RAISE EXCEPTION 'exodus-risk-limit' USING DETAIL = breaches::text;
    END IF;

    ok := approved AND jsonb_array_length(breaches) = 0;
    FOR i IN 1 .. coalesce(array_length(scopes, 1), 0) LOOP
        new_g := CASE WHEN ok THEN withs_g[i] ELSE withouts_g[i] END;
        new_n := CASE WHEN ok THEN withs_n[i] ELSE withouts_n[i] END;
        CONTINUE WHEN new_g = olds_g[i] AND new_n = olds_n[i];
        UPDATE risk_counters SET gross = gross - olds_g[i] + new_g, open_notional = open_notional - olds_n[i] + new_n,
            updated_at = now()
            WHERE scope = scopes[i] AND scope_key = keys[i];
        UPDATE risk_contributions SET gross = new_g, open_notional = new_n, computed_at = now()
            WHERE account = acct AND scope = scopes[i] AND scope_key = keys[i];
        IF NOT FOUND THEN
            INSERT INTO risk_contributions (account, scope, scope_key, gross, open_notional, computed_at)
                VALUES (acct, scopes[i], keys[i], new_g, new_n, now());
        END IF;
    END LOOP;
    RETURN breaches;
END;
$$;

-- How many decisions each account and each client has had. A decision reads them with the account (risk_gather)
-- and records only if they are unchanged (risk_record), so a decision made between its read and its write by
-- another decision of the same account or client is made again, never recorded over the other.
CREATE TABLE risk_serial (
    scope    text NOT NULL CHECK (scope IN ('ACCOUNT', 'CLIENT')),
    key      text NOT NULL,
    version  bigint NOT NULL,
    PRIMARY KEY (scope, key)
);

-- Append one entry to the audit chain (core/audit.py computes ``rest`` = at|actor|action|subject|canonical
-- JSON of detail). The chain's lock is taken first, so the previous hash read after it is the chain's head.
CREATE FUNCTION audit_append(p_at timestamptz, p_actor text, p_action text, p_subject text, p_detail jsonb,
                             p_rest text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    prev text;
    digest text;
BEGIN
    PERFORM pg_advisory_xact_lock(1096107092);  -- "AUDT", as core/audit.py
    SELECT a.hash INTO prev FROM audit_log a ORDER BY a.id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    digest := encode(sha256(convert_to(prev || '|' || p_rest, 'UTF8')), 'hex');
    INSERT INTO audit_log (at, actor, action, subject, detail, prev_hash, hash)
        VALUES (p_at, p_actor, p_action, p_subject, p_detail, prev, digest);
    RETURN digest;
END;
$$;

-- Everything one risk decision reads, after taking its account's and its client's locks (in that order, so
-- decisions cannot deadlock): one query, one snapshot. Rows by kind ``k``:
--   V  the policy version (qty)                          S  a trading state (symbol=scope, order_id=key,
--   P  a position (qty, price=avg_price, extra=realized)     side=state, broker=reason)
--   R  the account's other working orders, per symbol, side and broker (summed; highest price and rate)
--   H  the order's own reservation (an amend)             M  the day's equity marks (qty=start, price=peak)
--   O  the order's stored decision (symbol=request_hash, j=decision)
--   C  the client's recent orders (qty) and working orders (price)
--   D  a duplicate order of the client (order_id) that risk did not refuse
--   N  the account's (qty) and the client's (price) decision counts (risk_serial)
CREATE FUNCTION risk_gather(p_account text, p_client text, p_order_id text, p_symbol text, p_broker text,
                            p_day date, p_new_order boolean, p_at timestamptz, p_client_from timestamptz,
                            p_dup_from timestamptz, p_side text, p_qty numeric, p_price numeric)
RETURNS TABLE (k text, symbol text, qty numeric, price numeric, extra numeric, side text, rate numeric,
               leverage numeric, order_id text, broker text, notional numeric, j jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(1381190465, hashtext(p_account));  -- "RSKA", as activities/risk.py
    PERFORM pg_advisory_xact_lock(1381190467, hashtext(p_client));   -- "RSKC"
    RETURN QUERY
    SELECT 'V', NULL::text, (SELECT coalesce(max(v.version), 0) FROM risk_policy v)::numeric, NULL::numeric,
        NULL::numeric, NULL::text, NULL::numeric, NULL::numeric, NULL::text, NULL::text, NULL::numeric, NULL::jsonb
    UNION ALL
    SELECT 'S', t.scope, NULL, NULL, NULL, t.state, NULL, NULL, t.scope_key, t.reason, NULL, NULL
      FROM trading_state t WHERE (t.scope, t.scope_key) IN
        (('GLOBAL', ''), ('ACCOUNT', p_account), ('SYMBOL', p_symbol), ('BROKER', p_broker))
    UNION ALL
    SELECT 'P', ps.symbol, ps.qty, ps.avg_price, ps.realized_pnl, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM positions ps WHERE ps.account = p_account
    UNION ALL
    SELECT 'R', r.symbol, sum(r.qty_open), max(r.price), NULL, r.side, max(r.quote_rate), max(r.leverage), NULL,
        r.broker, sum(r.notional), NULL
      FROM risk_reservations r WHERE r.account = p_account AND r.released_at IS NULL AND r.order_id <> p_order_id
      GROUP BY r.symbol, r.side, r.broker
    UNION ALL
    SELECT 'H', r.symbol, r.qty_open, r.price, NULL, r.side, r.quote_rate, r.leverage, r.order_id, r.broker,
        r.notional, NULL
      FROM risk_reservations r WHERE r.order_id = p_order_id AND r.released_at IS NULL
    UNION ALL
    SELECT 'M', NULL, m.start_equity, m.peak_equity, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      FROM risk_equity_marks m WHERE m.account = p_account AND m.day = p_day
    UNION ALL
    SELECT 'O', o.request_hash, NULL, NULL, NULL, NULL, NULL, NULL, o.order_id, NULL, NULL, o.risk_decision
      FROM orders o WHERE p_new_order AND o.order_id = p_order_id AND o.risk_decision IS NOT NULL
    UNION ALL
    SELECT 'C', NULL,
        (SELECT count(*) FROM orders o WHERE o.client_id = p_client AND o.created_at > p_client_from
            AND o.created_at <= p_at AND o.order_id <> p_order_id)::numeric,
        (SELECT count(*) FROM risk_reservations r WHERE r.client_id = p_client AND r.released_at IS NULL
            AND r.order_id <> p_order_id)::numeric,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
      WHERE p_new_order
    UNION ALL
    (SELECT 'D', NULL, NULL, NULL, NULL, NULL, NULL, NULL, o.order_id, NULL, NULL, NULL
      FROM orders o WHERE p_new_order AND p_dup_from IS NOT NULL AND o.client_id = p_client
        AND o.symbol = p_symbol AND o.side = p_side AND o.qty = p_qty AND o.price IS NOT DISTINCT FROM p_price
        AND o.created_at > p_dup_from AND o.order_id <> p_order_id
        AND o.status <> 'DENIED' AND (o.risk_decision->>'approved')::boolean IS NOT FALSE
      LIMIT 1)
    UNION ALL
    SELECT 'N', NULL,
        coalesce((SELECT v.version FROM risk_serial v WHERE v.scope = 'ACCOUNT' AND v.key = p_account), 0)::numeric,
        coalesce((SELECT v.version FROM risk_serial v WHERE v.scope = 'CLIENT' AND v.key = p_client), 0)::numeric,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL;
END;
$$;

-- Record one decision: under the account's and the client's locks, check that neither has had another decision
-- since the gather (else 'exodus-risk-retry': decide again); write the equity marks, the order row with its
-- decision and the reservation (new, or an amend's larger-of-old-and-new); then take the counters (risk_take; a
-- breach raises 'exodus-risk-limit' and nothing is written) and append the audit entry. One statement: called on
-- its own it is its own transaction, and nothing it locks waits for a round trip to the worker.
CREATE FUNCTION risk_record(p jsonb) RETURNS void
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
            -- An amend holds the larger of its old and new terms until the broker answers; the booking after
            -- the answer sets the real terms (activities/persistence.py).
            UPDATE risk_reservations SET
                qty_open = GREATEST(qty_open, (r->>'qty')::numeric),
                price = GREATEST(price, (r->>'price')::numeric),
                notional = GREATEST(qty_open, (r->>'qty')::numeric) * GREATEST(price, (r->>'price')::numeric)
                    * quote_rate,
                margin = GREATEST(qty_open, (r->>'qty')::numeric) * GREATEST(price, (r->>'price')::numeric)
                    * quote_rate / leverage,
                broker = coalesce(broker, r->>'broker'),
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

-- Accounts (other than p_except) whose part of the totals may be too high: an order of theirs filled or ended
-- since their last decision computed it. Largest first.
CREATE FUNCTION risk_stale_accounts(p_except text, p_limit integer) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT c.account FROM risk_contributions c
    WHERE c.scope = 'FIRM' AND c.account <> p_except AND (c.gross > 0 OR c.open_notional > 0)
      AND EXISTS (SELECT 1 FROM risk_reservations r WHERE r.account = c.account AND r.updated_at > c.computed_at)
    ORDER BY c.gross + c.open_notional DESC
    LIMIT p_limit;
$$;

-- Replace one account's parts of the totals with freshly computed ones (the caller holds the account's lock):
-- p = [{"scope", "key", "gross", "notional"}]; a part the account has and p does not name becomes zero.
CREATE FUNCTION risk_refresh(p_account text, p jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    old_g numeric;
    old_n numeric;
BEGIN
    FOR part IN
        SELECT x.scope, x.key, coalesce(sum(x.gross), 0) AS gross, coalesce(sum(x.notional), 0) AS notional
        FROM (
            SELECT e->>'scope' AS scope, e->>'key' AS key, (e->>'gross')::numeric AS gross,
                (e->>'notional')::numeric AS notional
            FROM jsonb_array_elements(p) AS e
            UNION ALL
            SELECT c.scope, c.scope_key, NULL, NULL FROM risk_contributions c WHERE c.account = p_account
        ) AS x
        GROUP BY x.scope, x.key ORDER BY x.scope, x.key
    LOOP
        PERFORM 1 FROM risk_counters c WHERE c.scope = part.scope AND c.scope_key = part.key FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO risk_counters (scope, scope_key) VALUES (part.scope, part.key) ON CONFLICT DO NOTHING;
            PERFORM 1 FROM risk_counters c WHERE c.scope = part.scope AND c.scope_key = part.key FOR UPDATE;
        END IF;
        SELECT c.gross, c.open_notional INTO old_g, old_n FROM risk_contributions c
            WHERE c.account = p_account AND c.scope = part.scope AND c.scope_key = part.key;
        old_g := coalesce(old_g, 0);
        old_n := coalesce(old_n, 0);
        UPDATE risk_counters SET gross = gross - old_g + part.gross, open_notional = open_notional - old_n + part.notional,
            updated_at = now()
            WHERE scope = part.scope AND scope_key = part.key;
        INSERT INTO risk_contributions (account, scope, scope_key, gross, open_notional, computed_at)
            VALUES (p_account, part.scope, part.key, part.gross, part.notional, now())
            ON CONFLICT (account, scope, scope_key) DO UPDATE SET gross = EXCLUDED.gross,
                open_notional = EXCLUDED.open_notional, computed_at = EXCLUDED.computed_at;
    END LOOP;
END;
$$;
