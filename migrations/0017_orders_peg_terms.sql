-- The orders read model keeps every term of an order (core.domain.OrderTerms): a pegged order's peg and offset
-- too, so GET /orders/{id} answers them from the row as it does the others. Written by the order's bookings;
-- rows of orders booked before stay NULL there.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS peg_type text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS peg_offset numeric;
