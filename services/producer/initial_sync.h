// InitialSyncWriter: logs the initial sync of a subscription (docs/design.md
// "Membership"; issue 14) as Sync entries for that consumer alone
// (update_log.for_site), one chunk of documents at a time, in name order;
// and, when a subscription ends, Revoke entries for what the consumer holds.
//
// A job (es_producer.sync_job) starts when a subscription becomes active or
// its conditions change (a trigger, migration 0010). A chunk is written
// only when the consumer has acknowledged the chunk `chunks_in_flight` back
// (libsync/rules/sync_window.h), under the assembler's lock: its documents are read after
// every entry logged before it and before any logged after it, so changes
// made while the sync runs apply on top (no stale overwrite). The chunk's
// entries and the job's cursor commit together: a producer killed mid-sync
// goes on from the last committed chunk. Documents that fail the conditions
// in SQL (condition_sql.h) are not logged unless the consumer holds them;
// the pull judges every Sync entry again on the current document.
//
// Under WAL capture (SetWalWait) a transaction committed just before the
// read may not be logged yet, so a sync chunk is read in a snapshot, the WAL
// loop is let past a marker written after it, and the chunk is mended under
// the lock before it is logged (libsync/rules/chunk_plan.h). Only the
// replica whose WAL loop streams writes sync chunks.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_
#define EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/base/pg.h"
#include "libsync/config/config.h"
#include "libsync/rules/chunk_plan.h"
#include "services/producer/raw_change_store.h"

namespace eventstream {

class InitialSyncWriter {
 public:
  struct Options {
    int chunk_documents = 500;  // documents examined per chunk
    int chunks_in_flight = 4;   // logged and not yet acknowledged (sync_window.h)
    // Each chunk's entries once committed (the producer's log tail).
    RawChangeStore::LoggedSink on_logged;
  };
  struct Chunk {
    int written = 0;       // Sync entries logged
    int64_t last_seq = 0;  // the last of them
    bool more = false;     // work was done: call again at once
  };
  // WAL capture's progress (wal_capture.h WalCaptureLoop).
  struct WalWait {
    std::function<bool()> streaming;
    // Every transaction committed at or before `lsn` is logged (false on timeout).
    std::function<bool(uint64_t lsn, absl::Duration timeout)> captured;
  };
  // `config` must outlive the writer.
  InitialSyncWriter(const Config* config, Options options) : config_(config), options_(options) {}
  // Before the first WriteOne, when capture is `wal`.
  void SetWalWait(WalWait wait) { wal_ = std::move(wait); }

  // At most one chunk of one ready job; `conn` is the caller's own (not in
  // a transaction). One caller at a time.
  absl::StatusOr<Chunk> WriteOne(pg::Connection* conn) const;
  // Whether `acknowledged`, just recorded for `site`, lets a job the last
  // WriteOne found waiting write its next chunk (the caller then wakes the
  // loop instead of letting it wait out its poll). True once per wait.
  // Thread-safe.
  bool Unblocks(absl::string_view site, int64_t acknowledged) const;
  // Whether `acknowledged` for `site` would unblock a waiting job (the
  // pull then records it at once). Thread-safe.
  bool Awaits(absl::string_view site, int64_t acknowledged) const;

 private:
  struct Job;
  struct Page;
  // The chunk read and logged under the lock (trigger capture; revokes).
  absl::StatusOr<Chunk> WriteChunk(pg::Connection* conn, const Job& job) const;
  // The chunk read in a snapshot, then mended and logged (WAL capture).
  absl::StatusOr<Chunk> WriteChunkAfterWal(pg::Connection* conn, const Job& job) const;
  absl::StatusOr<Page> ReadPage(pg::Connection* conn, const Job& job) const;
  // In the caller's transaction: the assembler's lock, then the job locked
  // as it was read (false: restarted or moved on since).
  static absl::StatusOr<bool> LockJob(pg::Connection* conn, const Job& job);
  // The named documents as entry JSON (missing or unrepresentable ones left out).
  absl::StatusOr<std::map<std::string, std::string>> ReadJson(
      pg::Connection* conn, const DocTypeDef& def, const std::vector<std::string>& names) const;
  // Drops and re-reads what changed since the snapshot (chunk_plan.h).
  absl::Status MendChunk(pg::Connection* conn, const Job& job, const DocTypeDef& def,
                         const Page& page, const XidSnapshot& snapshot, int64_t seen_seq,
                         std::map<std::string, std::string>* docs) const;
  // Reserves seqs for `docs` (name -> entry data), logs them and advances
  // the job; in the caller's transaction. Returns what it logged.
  absl::StatusOr<RawChangeStore::Logged> LogChunk(pg::Connection* conn, const Job& job,
                                                  const Page& page,
                                                  std::map<std::string, std::string> docs) const;
  // After COMMIT: hands the chunk's entries to options_.on_logged.
  Chunk Committed(RawChangeStore::Logged logged) const;

  // Remembers which sites' jobs wait for an acknowledgment (Unblocks).
  void NoteWaiting(const pg::Result& jobs) const;

  const Config* config_;
  Options options_;
  WalWait wal_;
  mutable absl::Mutex mu_;
  // Site -> the acknowledgment its oldest waiting job needs.
  mutable std::map<std::string, int64_t, std::less<>> waiting_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_INITIAL_SYNC_H_
