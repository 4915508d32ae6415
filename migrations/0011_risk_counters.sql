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

-- Order counts of a sliding window, per symbol and overall: 11 buckets of a tenth of the window each
-- (counts[11] is bucket ``head``). The window's count is the sum of all 11, which covers the window and at
-- most one bucket more: it never counts fewer orders than the window holds.
CREATE TABLE risk_velocity (
    scope      text NOT NULL CHECK (scope IN ('GLOBAL', 'SYMBOL')),
    scope_key  text NOT NULL DEFAULT '',
    width_ms   bigint NOT NULL,
    head       bigint NOT NULL,
    counts     integer[] NOT NULL,
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
        SELECT c.gross, c.open_notional INTO tot_g, tot_n FROM risk_counters c
            WHERE c.scope = e->>'scope' AND c.scope_key = e->>'key' FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO risk_counters (scope, scope_key) VALUES (e->>'scope', e->>'key') ON CONFLICT DO NOTHING;
            SELECT c.gross, c.open_notional INTO tot_g, tot_n FROM risk_counters c
                WHERE c.scope = e->>'scope' AND c.scope_key = e->>'key' FOR UPDATE;
        END IF;
        SELECT r.gross, r.open_notional INTO old_g, old_n FROM risk_contributions r
            WHERE r.account = acct AND r.scope = e->>'scope' AND r.scope_key = e->>'key';
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
        SELECT r.width_ms, r.head, r.counts INTO w, h, cnt FROM risk_velocity r
            WHERE r.scope = v->>'scope' AND r.scope_key = v->>'key' FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO risk_velocity (scope, scope_key, width_ms, head, counts)
                VALUES (v->>'scope', v->>'key', width, b, array_fill(0, ARRAY[11])) ON CONFLICT DO NOTHING;
            SELECT r.width_ms, r.head, r.counts INTO w, h, cnt FROM risk_velocity r
                WHERE r.scope = v->>'scope' AND r.scope_key = v->>'key' FOR UPDATE;
        END IF;
        IF w <> width THEN  -- the window changed: start counting afresh
            cnt := array_fill(0, ARRAY[11]);
            h := b;
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
        IF approved AND n >= (v->>'max')::bigint THEN
            breaches := breaches || jsonb_build_object('code', v->>'code', 'scope', v->>'scope', 'key', v->>'key',
                'count', n, 'max', (v->>'max')::bigint, 'window_ms', (v->>'window_ms')::bigint);
        END IF;
        slot := 11 - (h - b)::integer;
        IF slot >= 1 THEN
            cnt[slot] := cnt[slot] + 1;
        END IF;
        UPDATE risk_velocity SET width_ms = width, head = h, counts = cnt
            WHERE scope = v->>'scope' AND scope_key = v->>'key';
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
        INSERT INTO risk_contributions (account, scope, scope_key, gross, open_notional, computed_at)
            VALUES (acct, scopes[i], keys[i], new_g, new_n, now())
            ON CONFLICT (account, scope, scope_key) DO UPDATE SET gross = EXCLUDED.gross,
                open_notional = EXCLUDED.open_notional, computed_at = EXCLUDED.computed_at;
    END LOOP;
    RETURN breaches;
END;
$$;
