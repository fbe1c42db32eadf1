-- Parallel apply (consumer.producers[].apply_workers > 1; docs/design.md
-- "Batch apply"): a batch's lanes commit one by one, each in its own
-- transaction, and the watermark moves only after the last. Each lane's
-- transaction also inserts one row here naming the seqs it applied (or
-- logged Failed / Parked), so if the process dies before the watermark
-- moves, the batch that comes again skips exactly those. The transaction
-- that moves the watermark deletes the rows it passes. Empty between
-- batches; nothing here for apply_workers: 1 (one transaction per batch).
-- The sync log is not used for this: its old rows may be trimmed.
CREATE TABLE lane_commit (
  id        bigserial PRIMARY KEY,
  producer  text NOT NULL,
  -- The largest of `seqs`: the row goes once the watermark reaches it.
  max_seq   bigint NOT NULL,
  seqs      bigint[] NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lane_commit_producer ON lane_commit (producer, max_seq);
