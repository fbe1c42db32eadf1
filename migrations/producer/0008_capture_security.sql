-- Capture runs with the producer's rights, records what it could not turn
-- into an entry, and trusts an origin only from roles allowed to set one
-- (issue 13; docs/design.md "Database roles").

-- Whoever may EXECUTE this function may mark its writes with
-- `SET LOCAL eventstream.origin = '<producer>'`: the consumer's role on a
-- site that runs both services (the owner, the producer's role, may too).
-- Anyone can set the setting; capture ignores it for every other role, so
-- the site's applications cannot hide their writes from a consumer.
--   GRANT EXECUTE ON FUNCTION es_producer.may_mark_origin() TO <consumer role>;
CREATE FUNCTION may_mark_origin() RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT true $$;
REVOKE EXECUTE ON FUNCTION may_mark_origin() FROM PUBLIC;

-- The capture trigger function (see 0002 for its arguments), now SECURITY
-- DEFINER: it writes raw_change with the rights of its owner, the role that
-- ran the migrations (the producer's), so a role writing the site's tables
-- needs no right on es_producer at all. Its search_path is fixed and every
-- name in it is schema-qualified, so nothing of the writer's session can
-- take its place. The origin is recorded only when the session's login role
-- (session_user: SET ROLE does not change it) may EXECUTE may_mark_origin().
CREATE OR REPLACE FUNCTION capture_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $capture$
DECLARE
  old_j jsonb;
  new_j jsonb;
  mark text;
BEGIN
  -- No arguments: the inert trigger SyncTriggers leaves on a table it may
  -- not drop a trigger from (DROP TRIGGER needs the table's owner).
  IF TG_NARGS = 0 THEN
    RETURN NULL;
  END IF;
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
  mark := nullif(current_setting('eventstream.origin', true), '');
  IF mark IS NOT NULL AND NOT has_function_privilege(
       session_user, 'es_producer.may_mark_origin()', 'EXECUTE') THEN
    mark := NULL;
  END IF;
  INSERT INTO es_producer.raw_change (table_name, doctype, op, old_row, new_row, origin)
  VALUES (TG_TABLE_NAME, TG_ARGV[0], left(TG_OP, 1), old_j, new_j, mark);
  RETURN NULL;
END
$capture$;
REVOKE EXECUTE ON FUNCTION capture_row() FROM PUBLIC;

-- The origin comes only from capture_row now.
ALTER TABLE raw_change ALTER COLUMN origin DROP DEFAULT;

-- The queue is the producer's alone. Earlier versions told operators to
-- grant the applications' role INSERT on raw_change and USAGE on its
-- sequence; such grants would let that role forge entries, so every grant
-- on them to anyone but their owner is revoked here.
DO $revoke$
DECLARE
  g record;
BEGIN
  FOR g IN
    SELECT DISTINCT c.oid::regclass::text AS rel, c.relkind, a.grantee
    FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
    WHERE c.oid IN ('es_producer.raw_change'::regclass,
                    'es_producer.raw_change_id_seq'::regclass)
      AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('REVOKE ALL ON %s %s FROM %s',
                   CASE WHEN g.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, g.rel,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                        ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
  END LOOP;
END
$revoke$;

-- What the assembler could not turn into an entry: one row per document and
-- transaction (e.g. a JSON value nested deeper than the 512 levels the
-- services read). Its raw rows are moved here, registry columns only, in the
-- transaction that assembles the rest; capture goes on with the next one.
-- Operators read it (and /metrics eventstream_producer_capture_errors_total);
-- nothing reads it back. Delete rows once dealt with.
CREATE TABLE capture_error (
  id         bigserial PRIMARY KEY,
  txid       xid8 NOT NULL,
  doctype    text NOT NULL,
  docname    text NOT NULL,
  error      text NOT NULL,
  -- [{id, table_name, doctype, op, old_row, new_row, origin}] in id order.
  raw_rows   jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX capture_error_doc ON capture_error (doctype, docname);
