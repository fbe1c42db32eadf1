-- The initial sync's page query (services/producer/initial_sync.cc kPageSql)
-- leaves out documents created after the job started: NOT EXISTS a Create
-- in the shared log (for_site IS NULL) of the DocType with seq > start_seq.
-- PostgreSQL runs that as one hashed scan per chunk; with only
-- update_log_doc_idx it read every entry of the DocType, the sync's own
-- Sync entries included, so each chunk cost more than the last (32 ms per
-- chunk at 50,000 entries). With this index it reads the Creates logged
-- since the job started (docs/design.md "Initial sync").
CREATE INDEX update_log_create_idx ON update_log (doctype, seq)
  WHERE update_type = 'Create' AND for_site IS NULL;
