-- The Event Update Log keeps each entry's data as json (its text, checked
-- to be JSON) instead of jsonb (docs/design.md "Capture"). jsonb built a
-- binary tree of every document on insert and rendered it back to text on
-- every read, while the services only ever write and read the text: as
-- json an entry costs about a quarter less to insert, a third as much to
-- read back, and a fifth less room, and a read returns exactly the text
-- that was logged (the same as the log tail in memory serves). Numbers stay
-- digit for digit, as before. The SQL that looks inside (webhooks' docstatus,
-- an initial sync's renames) uses operators json has too.
ALTER TABLE update_log ALTER COLUMN data TYPE json USING data::json;
