-- Update log retention (docs/design.md "Retention"; issue 15). The
-- retention loop (services/producer/retention.h) is the only writer of
-- log_state and of consumer.lost_through, apart from the consumer's
-- Producer.RestartSync with skip_trimmed (consumer_store.h), which moves a
-- cut-off consumer past the trimmed part.

-- How far the log has been (or is being) deleted: every entry with
-- seq <= trimmed_through may be gone. Recorded before the deletes it
-- covers, so a producer killed mid-trim has already told the consumers
-- it cuts off (below).
CREATE TABLE log_state (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  trimmed_through bigint NOT NULL DEFAULT 0,
  trimmed_at      timestamptz
);
INSERT INTO log_state (trimmed_through) VALUES (0);

-- The trim point that passed entries this consumer still needed (the
-- valve, max_age / max_entries): while its position is below it, its pulls
-- are answered FAILED_PRECONDITION "log trimmed: ..." until it restarts its
-- sync with skip_trimmed. 0 = never cut off.
ALTER TABLE consumer ADD COLUMN lost_through bigint NOT NULL DEFAULT 0;
