-- Initial sync (docs/design.md "Membership"; issue 14): when a consumer's
-- subscription to a DocType becomes active, every document it may see is
-- written to the update log as a Sync entry for that consumer alone, so it
-- travels the ordinary stream (real seqs, acknowledgment, crash safety) and
-- the changes logged after it apply on top.

-- Entries for one consumer only (an initial sync's Sync entries); NULL:
-- for every consumer and webhook, as before.
ALTER TABLE update_log ADD COLUMN for_site text;
ALTER TABLE update_log DROP CONSTRAINT update_log_update_type_check;
ALTER TABLE update_log ADD CONSTRAINT update_log_update_type_check
  CHECK (update_type IN ('Create', 'Update', 'Cancel', 'Rename', 'Delete', 'Sync', 'Revoke'));

-- The consumer asked for changes from now on only (`initial_sync: false`).
ALTER TABLE consumer_doctype ADD COLUMN skip_initial_sync boolean NOT NULL DEFAULT false;

-- One running or finished initial sync per subscription. The writer
-- (services/producer/initial_sync.cc) advances `cursor` in the same
-- transaction that logs the chunk, so a producer killed mid-sync goes on
-- from the last chunk it committed; a consumer killed mid-sync pulls the
-- logged chunks again like any entries.
CREATE TABLE sync_job (
  site        text NOT NULL REFERENCES consumer (site) ON DELETE CASCADE,
  doctype     text NOT NULL,
  -- sync: the documents the consumer may see, as Sync entries; revoke: the
  -- subscription ended, every document it holds as a Revoke entry.
  kind        text NOT NULL DEFAULT 'sync' CHECK (kind IN ('sync', 'revoke')),
  state       text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
  -- The last document name examined ('' = none yet), in the order of the
  -- table's primary key (its own collation), so each chunk is an index scan.
  cursor      text NOT NULL DEFAULT '',
  -- Seqs of the last two chunks logged: the next chunk waits until the
  -- consumer acknowledged the one before the last (two in flight).
  last_seq    bigint NOT NULL DEFAULT 0,
  prev_seq    bigint NOT NULL DEFAULT 0,
  -- The log's end when it started: documents created after it come whole
  -- through their Create, so the sync leaves them out.
  start_seq   bigint NOT NULL DEFAULT 0,
  done        bigint NOT NULL DEFAULT 0,  -- documents examined
  total       bigint,                     -- documents when it started; NULL = not counted yet
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  PRIMARY KEY (site, doctype)
);

-- A subscription that becomes active (first approval, re-subscribe, a
-- DocType added later), or whose conditions change while active, (re)starts
-- its initial sync, unless the consumer asked for none; one that stops
-- being active (unsubscribed, rejected, back to pending) revokes what the
-- consumer holds. Every path that writes consumer_doctype (RPCs, config,
-- admin) goes through here.
CREATE FUNCTION start_initial_sync() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  active_now boolean := NEW.status = 'approved' AND NOT NEW.unsubscribed;
  active_before boolean := TG_OP = 'UPDATE' AND OLD.status = 'approved' AND NOT OLD.unsubscribed;
  job text;
BEGIN
  IF active_before AND NOT active_now THEN
    job := 'revoke';
  ELSIF active_now AND NOT NEW.skip_initial_sync
        AND (NOT active_before
             OR OLD.condition IS DISTINCT FROM NEW.condition
             OR OLD.producer_condition IS DISTINCT FROM NEW.producer_condition) THEN
    job := 'sync';
  ELSE
    RETURN NULL;
  END IF;
  INSERT INTO es_producer.sync_job AS j (site, doctype, kind, start_seq)
  VALUES (NEW.site, NEW.doctype, job,
          (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))
  ON CONFLICT (site, doctype) DO UPDATE SET kind = EXCLUDED.kind, state = 'running',
    cursor = '', last_seq = 0, prev_seq = 0, start_seq = EXCLUDED.start_seq, done = 0,
    total = NULL, started_at = now(), finished_at = NULL;
  RETURN NULL;
END $$;
CREATE TRIGGER start_initial_sync AFTER INSERT OR UPDATE ON consumer_doctype
  FOR EACH ROW EXECUTE FUNCTION start_initial_sync();
