-- Native order lists at Alpaca (issue 15): a bracket's, OCO's or OTO's legs get Alpaca's own client order ids, so
-- the adapter finds a leg by ours through alpaca_order_ids (our client order id -> Alpaca's order id).
CREATE INDEX alpaca_order_ids_by_client_order_id ON alpaca_order_ids (broker, client_order_id);
