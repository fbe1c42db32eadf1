-- The sync log's status index (0003) covered every row, and nearly every
-- row is Synced: one index entry more for each applied entry (about 1.7 us
-- of the consumer's database per entry, measured on 20,000 rows of the
-- bench's size) for lookups that never ask for Synced rows through it.
-- ListSyncLog walks the primary key newest first (most rows are Synced, so
-- a status = 'Synced' filter stops early), the trimmer walks it oldest
-- first, and the applier's "is this document blocked" question has its own
-- partial index (sync_log_blocking). What remains useful is finding the
-- few Failed and Parked rows in a long log: this index keeps only those.
DROP INDEX sync_log_status;
CREATE INDEX sync_log_status_unsynced ON sync_log (status, id DESC)
  WHERE status <> 'Synced';
