-- The capture queue keeps each raw row as json (row_to_json's text)
-- instead of jsonb (docs/design.md "Capture"), as the update log does since
-- 0015, and names the row's document in a column of its own.
--  * A site's write never fails in the trigger for what is in its row:
--    to_jsonb(NEW) parsed every json column again and refused a "\u0000"
--    escape that json accepts, so such a save of the site's own
--    application failed. Nothing in the trigger looks into the json now:
--    the no-op test compares the rows' binary images (OLD *= NEW) and a
--    child row's parenttype is read from the row itself.
--  * The writer's trigger builds text instead of a binary tree, and the
--    assembler reads the text back as it is, instead of jsonb rendered
--    again (a scratch cluster, 80,000 rows: 375 -> 200 ms read back; a
--    20 % cheaper UPDATE).
--  * `docname` (the row's name) is what the initial sync's page query
--    matches pending Creates by; json's ->> would parse every pending row's
--    text and refuse the same "\u0000".
--  * The only change of what is captured: an UPDATE that changes a value's
--    binary form but not its jsonb (1.0 -> 1.00 in a numeric) is a change
--    now, as the value's text did change; it was dropped as a no-op.
ALTER TABLE raw_change ADD COLUMN docname text;
UPDATE raw_change SET docname = coalesce(new_row, old_row) ->> 'name';
ALTER TABLE raw_change
  ALTER COLUMN old_row TYPE json USING old_row::json,
  ALTER COLUMN new_row TYPE json USING new_row::json;

-- As 0008's (see there for SECURITY DEFINER and the origin), with json rows.
CREATE OR REPLACE FUNCTION capture_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $capture$
DECLARE
  mark text;
BEGIN
  -- No arguments: the inert trigger SyncTriggers leaves on a table it may
  -- not drop a trigger from (DROP TRIGGER needs the table's owner).
  IF TG_NARGS = 0 THEN
    RETURN NULL;
  END IF;
  IF TG_OP = 'UPDATE' AND OLD *= NEW THEN
    RETURN NULL;
  END IF;
  -- A child table (Frappe's always have parenttype): rows of parents not
  -- captured are not recorded.
  IF TG_NARGS > 1 THEN
    IF NOT (TG_OP <> 'DELETE' AND coalesce(NEW.parenttype, '') = ANY (TG_ARGV[1:TG_NARGS - 1]))
       AND NOT (TG_OP <> 'INSERT'
                AND coalesce(OLD.parenttype, '') = ANY (TG_ARGV[1:TG_NARGS - 1])) THEN
      RETURN NULL;
    END IF;
  END IF;
  mark := nullif(current_setting('eventstream.origin', true), '');
  IF mark IS NOT NULL AND NOT has_function_privilege(
       session_user, 'es_producer.may_mark_origin()', 'EXECUTE') THEN
    mark := NULL;
  END IF;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO es_producer.raw_change (table_name, doctype, op, docname, new_row, origin)
    VALUES (TG_TABLE_NAME, TG_ARGV[0], 'I', NEW.name, row_to_json(NEW), mark);
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO es_producer.raw_change (table_name, doctype, op, docname, old_row, new_row,
                                        origin)
    VALUES (TG_TABLE_NAME, TG_ARGV[0], 'U', NEW.name, row_to_json(OLD), row_to_json(NEW), mark);
  ELSE
    INSERT INTO es_producer.raw_change (table_name, doctype, op, docname, old_row, origin)
    VALUES (TG_TABLE_NAME, TG_ARGV[0], 'D', OLD.name, row_to_json(OLD), mark);
  END IF;
  RETURN NULL;
END
$capture$;
REVOKE EXECUTE ON FUNCTION capture_row() FROM PUBLIC;
