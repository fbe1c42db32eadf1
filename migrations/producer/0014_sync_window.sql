-- More initial sync chunks in flight (docs/design.md "Initial sync";
-- libsync/rules/sync_window.h). The last seqs of a job's newest chunks,
-- oldest first; `prev_seq` becomes the seq the next chunk waits for (the
-- chunk `in_flight` back; 0: none). A job restarted by the trigger or by
-- RestartSync has last_seq = 0, and the writer then ignores what is here.
ALTER TABLE sync_job ADD COLUMN recent_seqs bigint[] NOT NULL DEFAULT '{}';
