-- Membership (docs/design.md "Membership"; issue 14): what each consumer
-- holds of its DocTypes with conditions, replacing consumer_document (what
-- it was sent). services/producer/update_feed.cc is the only writer.
--
-- `holding` is what the consumer has acknowledged holding. A pull records
-- the changes its answer makes (move-in, move-out, Delete, Rename) in
-- `holding_change`, tagged with the seq of the entry that made them; they
-- are folded into `holding` once the consumer acknowledges that seq, and
-- dropped when the consumer asks for the same entries again (it died before
-- committing them), so a repeated pull sends the same move-ins and
-- move-outs again. Both stay as small as what the consumers hold.
CREATE TABLE holding (
  site    text NOT NULL REFERENCES consumer (site) ON DELETE CASCADE,
  doctype text NOT NULL,
  docname text NOT NULL,
  PRIMARY KEY (site, doctype, docname)
);

CREATE TABLE holding_change (
  site    text NOT NULL REFERENCES consumer (site) ON DELETE CASCADE,
  seq     bigint NOT NULL,
  doctype text NOT NULL,
  docname text NOT NULL,
  held    boolean NOT NULL,
  PRIMARY KEY (site, seq, doctype, docname)
);
CREATE INDEX holding_change_doc ON holding_change (site, doctype, docname, seq);

-- What a consumer was sent and not since withheld or deleted, it holds.
INSERT INTO holding (site, doctype, docname)
  SELECT site, doctype, docname FROM consumer_document
  WHERE hidden_from IS NULL AND deleted_seq IS NULL;
DROP TABLE consumer_document;
