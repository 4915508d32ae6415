-- The stream's capture of an order event (0021's stream_capture_order_event) in one statement (issue 18).
--
-- It ran at COMMIT once per order event (about five per order): a SELECT * of the order row into a record (which
-- also detoasted the row's risk decision, never used), then stream_append()'s UPDATE of stream_head, its INSERT
-- and its NOTIFY. Now the number is taken, the order's columns read and the row inserted by one INSERT (one
-- executor run instead of three, and only the columns the payload uses), then the same NOTIFY. The row written,
-- its number (from stream_head, in commit order, gapless) and the notification's payload are unchanged.

CREATE OR REPLACE FUNCTION stream_capture_order_event() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s bigint;
BEGIN
    WITH h AS (UPDATE stream_head SET seq = seq + 1 WHERE one RETURNING seq)
    INSERT INTO stream_events (seq, topic, kind, order_id, client_id, account, symbol, broker, data)
    SELECT h.seq, 'order', NEW.kind, NEW.order_id, o.client_id, o.account, o.symbol, o.broker,
        jsonb_build_object(
            'orderSeq', NEW.seq, 'at', NEW.at, 'status', NEW.status, 'detail', NEW.detail, 'actor', NEW.actor,
            'data', NEW.data,
            'order', jsonb_build_object(
                'clientOrderId', o.client_order_id, 'side', o.side, 'type', o.type, 'qty', o.qty::text,
                'price', o.price::text, 'stopPrice', o.stop_price::text, 'status', o.status,
                'filledQty', o.filled_qty::text, 'avgPrice', o.avg_price::text, 'version', o.version,
                'brokerOrderId', o.broker_order_id))
      FROM h LEFT JOIN orders o ON o.order_id = NEW.order_id
    RETURNING seq INTO s;
    PERFORM pg_notify('exodus_stream', s::text);
    RETURN NULL;
END;
$$;
