-- The paper venue journals a refused duplicate submission in the same transaction as the rest of the engine
-- call, and may save that transaction again after a failure whose commit went through: give each refusal an
-- id so a second save records it once.
ALTER TABLE sim_duplicate_submits ADD COLUMN event_id text;
CREATE UNIQUE INDEX sim_duplicate_submits_event ON sim_duplicate_submits (venue, event_id);
