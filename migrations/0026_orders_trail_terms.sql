-- Trailing stops (issue 15): the orders read model keeps their terms like every other term of an order
-- (core.domain.OrderTerms; store/orders.py, TermsColumns): the trail (an amount or a percentage) and the optional
-- activation price. Written by order_write() of 0018 (its column list is the table's row type); NULL for every
-- other order and for rows written before.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS trail_amount numeric;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS trail_percent numeric;
ALTER TABLE orders ADD COLUMN IF NOT EXISTS activation_price numeric;
