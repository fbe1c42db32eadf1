-- One delivery position for all webhooks, so that a dispatcher pass moves
-- one row instead of updating every webhook's row (which, at one pass every
-- few milliseconds, bloated es_producer.webhook by hundreds of dead rows a
-- pass). A webhook has looked at every update_log entry with
-- seq <= greatest(webhook.last_seq, webhook_dispatch.position):
-- webhook.last_seq is where it started (the log position when it was
-- created); only the dispatcher moves `position`.
CREATE TABLE webhook_dispatch (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  position  bigint NOT NULL
);
INSERT INTO webhook_dispatch (position)
  SELECT coalesce((SELECT min(last_seq) FROM webhook),
                  (SELECT coalesce(max(seq), 0) FROM update_log));

-- Each webhook's delivery cursor, for the admin RPCs, tests and tools.
CREATE VIEW webhook_cursor AS
  SELECT w.name, greatest(w.last_seq, d.position) AS last_seq
  FROM webhook w CROSS JOIN webhook_dispatch d;
