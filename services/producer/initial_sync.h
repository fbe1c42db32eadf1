// InitialSyncWriter: logs the initial sync of a subscription (docs/design.md
// "Membership"; issue 14) as Sync entries for that consumer alone
// (update_log.for_site), one chunk of documents at a time, in name order;
// and, when a subscription ends, Revoke entries for what the consumer holds.
//
// A job (es_producer.sync_job) starts when a subscription becomes active or
// its conditions change (a trigger, migration 0010). A chunk is written
// only when the consumer has acknowledged the chunk before the last one
// (two in flight), under the assembler's lock: its documents are read after
// every entry logged before it and before any logged after it, so changes
// made while the sync runs apply on top (no stale overwrite). The chunk's
// entries and the job's cursor commit together: a producer killed mid-sync
// goes on from the last committed chunk. Documents that fail the conditions
// in SQL (condition_sql.h) are not logged unless the consumer holds them;
// the pull judges every Sync entry again on the current document.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_
#define EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"

namespace eventstream {

class InitialSyncWriter {
 public:
  struct Options {
    int chunk_documents = 500;  // documents examined per chunk
  };
  struct Chunk {
    int written = 0;       // Sync entries logged
    int64_t last_seq = 0;  // the last of them
    bool more = false;     // work was done: call again at once
  };
  // `config` must outlive the writer.
  InitialSyncWriter(const Config* config, Options options) : config_(config), options_(options) {}

  // At most one chunk of one ready job. Thread-compatible; `conn` is the
  // caller's own (not in a transaction).
  absl::StatusOr<Chunk> WriteOne(pg::Connection* conn) const;

 private:
  struct Job;
  absl::StatusOr<Chunk> WriteChunk(pg::Connection* conn, const Job& job) const;

  const Config* config_;
  Options options_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_
