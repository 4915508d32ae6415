-- Risk on the whole list (issue 15): a bracket entry's reservation also holds the larger of the exits the list
-- keeps until the entry fills (core.risk.list_exit_notional). Kept apart so a booking that follows the entry's
-- open quantity (store/risk.py, follow_reservation) adds it back; released with the entry's reservation.
-- 0 for every other order and for rows written before.
ALTER TABLE risk_reservations ADD COLUMN IF NOT EXISTS list_notional numeric NOT NULL DEFAULT 0;
ALTER TABLE risk_reservations ADD COLUMN IF NOT EXISTS list_margin numeric NOT NULL DEFAULT 0;
