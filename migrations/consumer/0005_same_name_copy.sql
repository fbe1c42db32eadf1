-- Provenance of use_same_name copies (issue 15): a row here says the
-- document named `docname` in the local table of (producer, doctype) is, or
-- was, that producer's copy. Copies with use_same_name: false carry it on
-- the row itself (remote_site_name); same-name copies have no such column,
-- and the sync log that used to be read instead is trimmed by
-- consumer.sync_log_retention. The applier keeps this table in the same
-- transaction as the document: a row is held (released_at NULL) when it
-- inserts a copy, a Sync makes a local document the producer's or a Rename
-- gives it a new name, and released (released_at set) when it deletes the
-- copy or renames it away. Held rows stay as long as the copy; released
-- ones are remembered as long as the sync log keeps its rows (so a copy
-- restored from a backup is still recognised) and then deleted by the sync
-- log trimmer. Resnapshot reads it to find copies the producer no longer
-- shows.
CREATE TABLE same_name_copy (
  -- consumer.producers[].name and the producer's DocType (as entries name it).
  producer     text NOT NULL,
  doctype      text NOT NULL,
  -- The document's name, here and on the producer.
  docname      text NOT NULL,
  -- NULL while the copy is held; when the applier deleted it, else.
  released_at  timestamptz,
  PRIMARY KEY (producer, doctype, docname)
);
CREATE INDEX same_name_copy_released ON same_name_copy (released_at)
  WHERE released_at IS NOT NULL;

-- What the sync log still remembers: every document an entry named, held
-- unless its latest entry deleted it. A name here that has no local
-- document is harmless (readers join with the table); a name of a DocType
-- without use_same_name is never read.
INSERT INTO same_name_copy (producer, doctype, docname, released_at)
  SELECT producer, doctype, docname,
         CASE WHEN update_type IN ('Delete', 'Revoke') THEN created_at END
  FROM (SELECT DISTINCT ON (producer, doctype, docname)
               producer, doctype, docname, update_type, created_at
        FROM sync_log ORDER BY producer, doctype, docname, id DESC) latest;
