-- Market data: the latest quote of every (source, symbol), the one place every process reads prices from.
-- Written by the worker's quote writer (what its brokers publish: the paper feed, FIX market data) and by the
-- API's MT5 bridge endpoint (the EA's ticks); read by the risk check (in its pipelined transaction), the
-- quotes endpoints and the quote-age metric. One row per (source, symbol), overwritten in place: the write
-- load is one multi-row upsert per flush, whatever the tick rate.
CREATE TABLE market_quotes (
    source       text NOT NULL,                -- the broker the quote came from: paper, fix, mt5, ...
    symbol       text NOT NULL,                -- the Exodus symbol (broker names are mapped before this)
    bid          numeric,
    ask          numeric,
    last         numeric,
    quoted_at    timestamptz NOT NULL,         -- the source's time (never later than received_at)
    received_at  timestamptz NOT NULL,         -- when Exodus got it
    CHECK (bid IS NOT NULL OR ask IS NOT NULL OR last IS NOT NULL),
    PRIMARY KEY (source, symbol)
);
-- The risk check reads by symbol (every source of the order's symbol, its positions' and FX pairs).
CREATE INDEX market_quotes_symbol ON market_quotes (symbol);
