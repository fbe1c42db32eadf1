-- The consumer's own schema (es_consumer).
COMMENT ON SCHEMA es_consumer IS 'eventstream consumer: producers, watermarks, sync log';

-- Naming series counters (libsync/naming.h): one row per prefix, taken inside
-- the inserting transaction so the series has no gaps.
CREATE TABLE series (
  name    text PRIMARY KEY,
  current bigint NOT NULL
);
