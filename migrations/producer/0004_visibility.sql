-- Visibility bookkeeping for PullUpdates / GetDocument / FindDocuments
-- (services/producer/update_feed.h is the only writer).

-- The documents each consumer was sent (by its current name on this site):
--  * a Delete reaches a consumer only if its document is listed here;
--  * a document that becomes visible while not listed here brings its
--    earlier entries along (access flip);
--  * GetDocument / FindDocuments serve documents that a listed document links
--    to (dependencies).
-- A pull writes this table with O(1) statements (one multi-row upsert, one
-- multi-row DELETE for deletes and renames), in the same transaction that
-- records the consumer's acknowledged position.
CREATE TABLE consumer_document (
  site        text NOT NULL REFERENCES consumer (site) ON DELETE CASCADE,
  doctype     text NOT NULL,
  docname     text NOT NULL,
  -- The seq of the first entry of this document withheld from the consumer
  -- (its condition was false) since it was last sent one; NULL = none. When
  -- the document becomes visible again, the entries from here on come first.
  hidden_from bigint,
  PRIMARY KEY (site, doctype, docname)
);
