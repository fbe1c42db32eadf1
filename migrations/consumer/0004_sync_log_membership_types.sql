-- Membership (issue 14): the sync log also records Sync entries (the
-- producer's whole current document: move-in, initial sync) and Revoke
-- entries (move-out). Replaces 0003's check (PostgreSQL named it
-- sync_log_update_type_check); both statements run in the migration's
-- transaction, so a crash leaves the old check or the new one.
ALTER TABLE sync_log DROP CONSTRAINT IF EXISTS sync_log_update_type_check;
ALTER TABLE sync_log ADD CONSTRAINT sync_log_update_type_check
  CHECK (update_type IN ('Create', 'Update', 'Cancel', 'Rename', 'Delete', 'Sync', 'Revoke'));
