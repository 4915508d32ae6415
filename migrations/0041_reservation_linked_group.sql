-- Reduce-only across order lists: a list's one-cancels-other legs (a bracket's exits, an OCO's or OUO's legs) never
-- work together beyond one's size, so they use up a position once. Each such leg's reservation carries its group
-- (the smallest order id among the leg and its linked orders: the same for every member), and the risk check counts
-- a group's working quantity once (its largest member), not once per member (activities/risk.py).
ALTER TABLE risk_reservations ADD COLUMN IF NOT EXISTS linked_group text;
CREATE INDEX IF NOT EXISTS risk_reservations_linked_group ON risk_reservations (account, symbol, side)
    WHERE linked_group IS NOT NULL AND released_at IS NULL;
