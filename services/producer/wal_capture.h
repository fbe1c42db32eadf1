// WAL capture (producer.capture: wal; docs/design.md "WAL capture"): the
// captured tables' changes read from a logical replication slot (pgoutput)
// instead of capture triggers, and logged as the same Event Update Log
// entries the assembler writes (assembler.h; the same planner and the same
// WritePass step).
//
// WalCapture::LogTransactions (one batch):
//  * In one transaction holding the assembler's lock (seqs follow commit
//    order, as the assembler's and initial sync's): the transactions' rows of
//    the published tables (wal_capture_plan.h ToTxRows), one BuildEntries per
//    transaction (split by document only when it refuses, the failures going
//    to capture_error), the entries written by WritePass, and the batch's
//    last end LSN in es_producer.wal_position. A transaction at or below the
//    recorded end is skipped (it was logged before a crash).
//  * Origin: the consumer's apply marker (wal_capture_plan.h OriginOf).
//
// WalCaptureLoop (one thread, one replication stream, one SQL connection):
//  * Reads committed transactions in commit order and logs them in batches
//    (as many as arrive back to back, up to max_batch_rows rows).
//  * Confirms a batch's end LSN to the slot only after its COMMIT. Killed
//    anywhere, the server sends every unconfirmed transaction again and
//    LogTransactions skips those whose entries committed: nothing lost,
//    nothing logged twice.
//  * When nothing is open or waiting, confirms the server's position, so
//    the slot does not hold WAL that other tables wrote.
//  * One replica streams at a time (the slot admits one reader); the others
//    retry with backoff (logged once per streak) and take over when it dies.
//  * Errors drop the stream (and the connection if broken) and start over
//    from the slot's confirmed position.
//  * WaitCaptured lets another thread wait until every transaction committed
//    at or before an LSN is logged (initial sync chunks, initial_sync.h).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/base/backoff.h"
#include "libsync/base/pg.h"
#include "libsync/model/doctype.h"
#include "libsync/wal/replication_stream.h"
#include "libsync/wal/transaction_builder.h"
#include "services/producer/assembler.h"
#include "services/producer/wal_capture_store.h"

namespace eventstream {

class WalCapture {
 public:
  // `registry` must outlive this. `reports` as the assembler's (metrics).
  WalCapture(const DocTypeRegistry* registry, WalCaptureStore store,
             Assembler::Options reports = {});

  // Logs `txs` (committed, in commit order) in one transaction; see the
  // file comment. Returns the entries written; `last_seq` gets the last
  // seq (left alone when none).
  absl::StatusOr<int> LogTransactions(pg::Connection* conn,
                                      const std::vector<wal::WalTransaction>& txs,
                                      int64_t* last_seq = nullptr) const;
  const WalCaptureStore& store() const { return store_; }

 private:
  const DocTypeRegistry* registry_;
  WalCaptureStore store_;
  Assembler::Options reports_;
};

class WalCaptureLoop {
 public:
  struct Options {
    std::string database_url;
    int max_batch_rows = 5000;  // changes per log transaction (soft: whole transactions)
    absl::Duration idle_wait = absl::Milliseconds(100);  // a read's wait when idle
    int max_backoff_ms = 2000;
    // How often the slot hears from this loop, also while a batch waits to
    // become visible; well below the server's wal_sender_timeout (60 s).
    absl::Duration status_interval = absl::Seconds(10);
  };
  // on_entries(last_seq) runs on the loop thread after each batch that wrote
  // entries (the notifier and webhooks, as AssemblerLoop's).
  WalCaptureLoop(const WalCapture* capture, Options options,
                 std::function<void(int64_t last_seq)> on_entries = nullptr);
  ~WalCaptureLoop();  // Stop()
  WalCaptureLoop(const WalCaptureLoop&) = delete;
  WalCaptureLoop& operator=(const WalCaptureLoop&) = delete;

  void Start();
  // Returns once the batch in flight committed or rolled back; idempotent.
  void Stop();

  // Whether this replica is reading the slot now.
  bool Streaming() const;
  // Waits until every transaction that committed at or before `lsn` is
  // logged. False after `timeout`, or at once when (or as soon as) this
  // replica is not streaming. Thread-safe.
  bool WaitCaptured(uint64_t lsn, absl::Duration timeout) const;

 private:
  // The loop thread's own state.
  struct Stream {
    std::unique_ptr<pg::Connection> conn;
    std::unique_ptr<wal::ReplicationStream> stream;
    wal::TransactionBuilder builder;
    std::vector<wal::WalTransaction> waiting;  // committed, not yet logged
    size_t waiting_rows = 0;
    wal::Lsn logged = 0;  // the last end LSN whose entries committed
  };
  void Run();
  // Connects and starts the stream at the slot's confirmed position.
  absl::Status Open(Stream* s);
  // Reads for at most one idle wait, logging what is complete.
  absl::Status Step(Stream* s);
  // One message into the builder; a completed transaction joins `waiting`
  // (or is confirmed at once when it was logged before).
  absl::Status Take(Stream* s, const wal::WalMessage& message);
  // Waits until new snapshots see every transaction of `waiting` committed.
  absl::Status AwaitVisible(Stream* s);
  // Logs `waiting` (once visible), then confirms it.
  absl::Status Flush(Stream* s);
  // Every transaction committed at or before `lsn` is logged (or, with
  // `streaming` false, this replica stopped reading).
  void Captured(wal::Lsn lsn, bool streaming = true);

  const WalCapture* capture_;
  Options options_;
  std::function<void(int64_t)> on_entries_;
  InterruptibleSleeper sleeper_;
  absl::Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
  mutable absl::Mutex watch_mu_;
  wal::Lsn captured_ ABSL_GUARDED_BY(watch_mu_) = 0;
  bool streaming_ ABSL_GUARDED_BY(watch_mu_) = false;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WAL_CAPTURE_H_
