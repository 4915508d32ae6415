-- The orders read model keeps every term of an order (core.domain.OrderTerms): a pegged order's peg and offset
-- too, so GET /orders/{id} answers them from the row as it does the others (store/orders.py, TermsColumns).
-- Written with the row's first write (the risk decision's, or a booking's when it comes first, through
-- order_write() of 0018, whose column list is the table's row type); an amend never changes them, so the
-- booking's update leaves them as they are. Rows of orders written before stay NULL there.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS peg_type text;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS peg_offset numeric;
