-- Event Sync Log: one row per update log entry a producer sent us, written
-- in the transaction that applied it (services/consumer/applier.h).
--
--   Synced  applied (or nothing to do: `note` says why)
--   Failed  rolled back; `error` says why; Resync retries it
--   Parked  not attempted: an earlier entry of the same document is Failed
--           (`parked_behind` names that row); Resync of it releases these
--           in seq order.
-- Resync updates a row in place (status, error, note, attempts, updated_at),
-- so the log shows each entry's current outcome once.
CREATE TABLE sync_log (
  id            bigserial PRIMARY KEY,
  -- consumer.producers[].name the entry came from.
  producer      text NOT NULL,
  -- The entry's seq in that producer's update log.
  seq           bigint NOT NULL,
  -- The producer's DocType and document name, as the entry named them.
  doctype       text NOT NULL,
  docname       text NOT NULL,
  update_type   text NOT NULL
                CHECK (update_type IN ('Create', 'Update', 'Cancel', 'Rename', 'Delete')),
  status        text NOT NULL CHECK (status IN ('Synced', 'Failed', 'Parked')),
  -- Why it Failed ('' otherwise).
  error         text NOT NULL DEFAULT '',
  -- What happened when Synced did not mean a plain write ("already exists
  -- locally; left alone", "fetched the whole document", ...).
  note          text NOT NULL DEFAULT '',
  -- The entry's data_json exactly as received (text: digit for digit).
  data          text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  attempts      int NOT NULL DEFAULT 1,
  -- For Parked rows: the Failed row this one waits for.
  parked_behind bigint REFERENCES sync_log (id),
  -- The local DocType and name the document has here ('' when none).
  local_doctype text NOT NULL DEFAULT '',
  local_docname text NOT NULL DEFAULT ''
);

-- ListSyncLog: newest first, filtered by producer / DocType / status.
CREATE INDEX sync_log_producer_doctype ON sync_log (producer, doctype, id DESC);
CREATE INDEX sync_log_status ON sync_log (status, id DESC);
-- "Is there a Failed or Parked row for (producer, doctype, docname)?",
-- asked for every applied entry: a small partial index.
CREATE INDEX sync_log_blocking ON sync_log (producer, doctype, docname)
  WHERE status IN ('Failed', 'Parked');
-- Resync: the rows parked behind a Failed one.
CREATE INDEX sync_log_parked_behind ON sync_log (parked_behind, seq)
  WHERE status = 'Parked';
