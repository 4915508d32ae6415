-- One report journal for every broker adapter (brokers/journal.py), instead of one table per adapter
-- (fix_reports, alpaca_reports, mt5_reports): every execution report an adapter learns of, once per
-- (broker, stream, exec_id), with its delivery to the order workflow (delivered_at), so a restart re-delivers
-- what was journaled but not yet delivered and a status answer can carry the order's reports.
--   stream  what delivers the broker's reports: the FIX session ("FIX.4.4:EXODUS->EXVENUE"), the MT5 account,
--           the broker's name for a REST broker; a worker reads the streams it owns
--   ref     the broker's own id of the order the report is about, where the adapter looks reports up by it
--           (Alpaca's order id along a replace chain)
--   source  how the adapter learnt it ("stream:fill", "activity:<id>", "status", "answer"...; '' when it has one way)
-- The rows of the three tables are copied in their arrival order (per broker) with their delivery marks; the
-- tables are dropped. Stop the workers before applying it (a worker of the previous release writes the old tables).

CREATE TABLE broker_reports (
    broker        text NOT NULL,
    stream        text NOT NULL,
    exec_id       text NOT NULL,
    -- arrival order
    seq           bigserial,
    order_id      text NOT NULL,
    kind          text NOT NULL,
    ref           text,
    source        text NOT NULL DEFAULT '',
    body          jsonb NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    PRIMARY KEY (broker, stream, exec_id)
);
CREATE INDEX broker_reports_order ON broker_reports (broker, order_id, seq);
CREATE INDEX broker_reports_undelivered ON broker_reports (broker, stream, seq) WHERE delivered_at IS NULL;
CREATE INDEX broker_reports_ref ON broker_reports (broker, ref) WHERE ref IS NOT NULL;
CREATE INDEX broker_reports_fills ON broker_reports (broker, stream, seq) WHERE kind = 'FILL';

-- FIX: one stream per session; the broker's name is "fix" (the registry's only FIX broker).
INSERT INTO broker_reports (broker, stream, exec_id, order_id, kind, body, received_at, delivered_at)
SELECT 'fix', session, exec_id, order_id, kind, body, received_at, delivered_at FROM fix_reports ORDER BY seq;

-- Alpaca: one stream per broker name; ref is the Alpaca order id.
INSERT INTO broker_reports (broker, stream, exec_id, order_id, kind, ref, source, body, received_at, delivered_at)
SELECT broker, broker, exec_id, order_id, kind, alpaca_id, source, body, received_at, delivered_at
FROM alpaca_reports ORDER BY seq;

-- MT5: one stream per bridge account.
INSERT INTO broker_reports (broker, stream, exec_id, order_id, kind, body, received_at, delivered_at)
SELECT 'mt5', account, exec_id, order_id, kind, body, created_at, delivered_at FROM mt5_reports ORDER BY seq;

DROP TABLE fix_reports;
DROP TABLE alpaca_reports;
DROP TABLE mt5_reports;
