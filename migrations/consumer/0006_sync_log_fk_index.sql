-- The self-reference parked_behind -> sync_log(id) (0003) had only the
-- partial index sync_log_parked_behind (WHERE status = 'Parked'), which
-- the foreign key's check cannot use: every deleted sync log row made
-- PostgreSQL scan the whole table for rows parked behind it, so the sync
-- log trimmer's batches of 1,000 took tens of seconds on a table of tens
-- of thousands of rows and retention fell behind without end (found by
-- tools/bench-soak: 115k rows with sync_log_retention 30s). This index
-- serves that check (`parked_behind = $1` implies IS NOT NULL) and stays
-- small: only Parked rows, and rows that were, carry a value.
CREATE INDEX sync_log_parked_behind_fk ON sync_log (parked_behind)
  WHERE parked_behind IS NOT NULL;
