-- The decision's read (store/risk.py ``gather``) planned once per connection, not once per order (issue 18).
--
-- The statement that read risk_gather() and the quotes was planned afresh for every decision: psycopg prepares
-- it, but Postgres' plan cache kept choosing a custom plan (its estimate for the quotes' ``= ANY(array)`` is
-- lower with the array's real length than the generic plan's), and planning that UNION ALL cost more than
-- running it. This overload of risk_gather() takes the quotes' symbols too and runs the same query inside
-- plpgsql with ``plan_cache_mode = force_generic_plan``: each connection plans it once. The rows, their order of
-- reading (the locks, then one snapshot of the account; the quotes as of the statement's start) and the
-- 13-argument risk_gather() of 0011 are unchanged.

CREATE FUNCTION risk_gather(p_account text, p_client text, p_order_id text, p_symbol text, p_broker text,
                            p_day date, p_new_order boolean, p_at timestamptz, p_client_from timestamptz,
                            p_dup_from timestamptz, p_side text, p_qty numeric, p_price numeric,
                            p_quote_symbols text[])
RETURNS TABLE (k text, symbol text, qty numeric, price numeric, extra numeric, side text, rate numeric,
               leverage numeric, order_id text, broker text, notional numeric, j jsonb,
               quoted_at timestamptz, received_at timestamptz)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    WITH g AS MATERIALIZED (
      SELECT * FROM risk_gather(p_account, p_client, p_order_id, p_symbol, p_broker, p_day, p_new_order, p_at,
                                p_client_from, p_dup_from, p_side, p_qty, p_price)
    )
    SELECT g.*, NULL::timestamptz, NULL::timestamptz FROM g
    UNION ALL
    SELECT 'Q'::text, q.symbol, q.bid, q.ask, q.last, NULL::text, NULL::numeric, NULL::numeric, NULL::text, q.source,
        NULL::numeric, NULL::jsonb, q.quoted_at, q.received_at
      FROM market_quotes q
     WHERE q.symbol = ANY(p_quote_symbols) OR q.symbol IN (SELECT g.symbol FROM g WHERE g.k = 'P');
END;
$$;
