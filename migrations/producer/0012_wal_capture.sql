-- WAL capture (producer.capture: wal; services/producer/wal_capture.h;
-- issue 17). The end LSN of the last transaction whose entries were logged,
-- per slot, written in the same transaction as those entries. The slot is
-- confirmed only after that COMMIT, so after a crash in between the server
-- sends the transaction again and capture skips it (end LSN at or below
-- this one): nothing is lost and nothing logged twice.
CREATE TABLE wal_position (
  slot       text PRIMARY KEY,
  end_lsn    bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
