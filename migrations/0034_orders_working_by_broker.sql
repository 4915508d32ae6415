-- Broker sweeps (issue 18, worker/sweep.py): the worker owning a broker's session reads that broker's working
-- orders once per sweep interval. A partial index keeps that read small however many closed orders the table holds.
CREATE INDEX IF NOT EXISTS orders_working_by_broker ON orders (broker)
    WHERE status IN ('ACCEPTED', 'TRIGGERED', 'PARTIALLY_FILLED');
