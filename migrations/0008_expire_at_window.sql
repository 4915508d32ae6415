-- Orders stored before the API bounded times (core/bounds.py) may carry an expiry outside 1970-2200: an
-- expireAt of 9999-12-31T23:00-05:00 was stored as year 10000 UTC, which no client library reads, and made
-- every page of GET /api/v1/orders that held the row fail. Clamp such expiries into the window (2199-12-31
-- still means "never" to any order) and flag the row, so it reads again and says why it changed.
UPDATE orders
SET expire_at = CASE
        WHEN expire_at >= timestamptz '2200-01-01 00:00:00+00' THEN timestamptz '2199-12-31 23:59:59+00'
        ELSE timestamptz '1970-01-01 00:00:00+00'
    END,
    flags = array_append(flags, 'EXPIRE_AT_OUT_OF_RANGE')
WHERE expire_at >= timestamptz '2200-01-01 00:00:00+00' OR expire_at < timestamptz '1970-01-01 00:00:00+00';
