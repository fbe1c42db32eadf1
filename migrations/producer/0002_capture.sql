-- Capture: raw change rows written by row triggers on the site's DocType
-- tables, and the Event Update Log the assembler builds from them.
-- See services/producer/capture.h and services/producer/assembler.h.

-- One row per captured INSERT/UPDATE/DELETE of a DocType table, written in
-- the application's own transaction (so it exists iff that write commits).
-- The assembler consumes (deletes) the rows of a transaction in the same
-- database transaction that writes its update_log entries.
CREATE TABLE raw_change (
  id         bigserial PRIMARY KEY,
  txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
  table_name text NOT NULL,
  doctype    text NOT NULL,   -- TG_ARGV[0] of the capture trigger
  op         char(1) NOT NULL CHECK (op IN ('I', 'U', 'D')),
  old_row    jsonb,           -- to_jsonb(OLD); NULL for I
  new_row    jsonb,           -- to_jsonb(NEW); NULL for D
  -- Set by a consumer applying a producer's change:
  --   SET LOCAL eventstream.origin = 'hq'
  origin     text DEFAULT nullif(current_setting('eventstream.origin', true), '')
);
CREATE INDEX raw_change_txid_idx ON raw_change (txid);

-- The Event Update Log. seq only grows, in commit order of the assembler's
-- transactions (only the holder of the assembler lock assigns it).
CREATE SEQUENCE update_log_seq AS bigint;
CREATE TABLE update_log (
  seq         bigint PRIMARY KEY,
  doctype     text NOT NULL,
  docname     text NOT NULL,
  update_type text NOT NULL
              CHECK (update_type IN ('Create', 'Update', 'Cancel', 'Rename', 'Delete')),
  -- Create: the whole document; Update/Cancel: {changed, added, removed,
  -- row_changed}; Rename: {old_name, new_name}; Delete: NULL.
  -- jsonb keeps numeric values digit for digit.
  data        jsonb,
  origin      text,
  txid        xid8 NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE update_log_seq OWNED BY update_log.seq;
CREATE INDEX update_log_doc_idx ON update_log (doctype, docname, seq);

-- The capture trigger function, shared by every captured table.
--   TG_ARGV[0]      the DocType whose table this is
--   TG_ARGV[1..]    for a child table: the parent DocTypes being captured;
--                   rows whose parenttype is none of them are not recorded
--                   (a child DocType may serve several parents).
-- An UPDATE that changes nothing is not recorded.
-- The schema is spelled out because the function runs with the
-- application's search_path.
CREATE FUNCTION capture_row() RETURNS trigger
LANGUAGE plpgsql AS $capture$
DECLARE
  old_j jsonb;
  new_j jsonb;
BEGIN
  IF TG_OP <> 'INSERT' THEN old_j := to_jsonb(OLD); END IF;
  IF TG_OP <> 'DELETE' THEN new_j := to_jsonb(NEW); END IF;
  IF TG_OP = 'UPDATE' AND old_j = new_j THEN
    RETURN NULL;
  END IF;
  IF TG_NARGS > 1
     AND NOT (coalesce(new_j ->> 'parenttype', '') = ANY (TG_ARGV[1:TG_NARGS - 1]))
     AND NOT (coalesce(old_j ->> 'parenttype', '') = ANY (TG_ARGV[1:TG_NARGS - 1])) THEN
    RETURN NULL;
  END IF;
  INSERT INTO es_producer.raw_change (table_name, doctype, op, old_row, new_row)
  VALUES (TG_TABLE_NAME, TG_ARGV[0], left(TG_OP, 1), old_j, new_j);
  RETURN NULL;
END
$capture$;
