// Assembler: turns committed raw change rows (es_producer.raw_change, written
// by the capture triggers, see capture.h) into Event Update Log entries
// (es_producer.update_log).
//
// What the entries are (Create / Update / Cancel / Rename / Delete, one per
// document per transaction, in commit order) is libsync/rules/entry_builder.h;
// which transactions a pass takes and how a failing document is split off,
// libsync/rules/assembly_plan.h; the SQL, raw_change_store.h. Only the registry's
// columns travel (doctype.h IsReplicatedColumn): the raw rows hold whole
// table rows, and every other column (one the site added for itself) is cut
// before an entry is built.
//
// One document never holds up another: a document whose raw rows of a
// transaction cannot be turned into an entry (a JSON value nested deeper
// than value.h's 512 levels, which PostgreSQL accepts; a row without a
// string name) gets no entry for that transaction. Its raw rows (registry
// columns only) move to es_producer.capture_error in the pass's own
// transaction, a log line names its DocType, name and txid, on_failed is
// called (metric eventstream_producer_capture_errors_total), and the other
// documents of the same transaction and every later one are assembled as
// usual. How: a transaction is built with one BuildEntries call; only when
// a row does not parse, or BuildEntries refuses, is it split by document
// (libsync/model/row_groups.h, with the keys of an unparsable row extracted by
// PostgreSQL). Before that, an unparsable row is read again with its
// non-registry columns cut out by PostgreSQL, so deep JSON in a column the
// registry does not know fails nothing.
//
// Ordering (why seq never lets a watermark skip an entry):
//  * Only the holder of a transaction-level advisory lock assembles; seq
//    comes from es_producer.update_log_seq inside that transaction, so the
//    update_log transactions commit in seq order and a reader sees a prefix.
//  * Each call consumes raw rows of transactions that are committed (raw
//    rows of running or rolled-back transactions are invisible). A
//    transaction that commits later is assembled by a later call and gets
//    a higher seq, so a consumer whose watermark passed entries committed
//    in between still receives it.
//  * Within one call, transactions are ordered by their last raw row id.
//    If T's write to a row precedes U's write to the same row, T committed
//    (released the row lock) before U wrote it, so T's last id < U's: every
//    document's entries follow the order its rows were changed in.
//    (A `txid < pg_snapshot_xmin` filter was considered and rejected: with
//    an unrelated long transaction open it can assemble U before T when T
//    has the higher txid but wrote the row first.)
//  * A call takes at most max_raw_rows raw rows, never splitting a
//    transaction: the transactions whose rows all lie within the first
//    max_raw_rows ids (the ones with the smallest last ids, so the order
//    above holds across calls); a single larger transaction is taken whole.
//
// Crash safety: reading raw rows, inserting the entries, recording the
// failures and deleting the consumed raw rows happen in one transaction. If the process dies at any
// point before COMMIT, nothing is written or consumed and the next call
// (of this or another replica) assembles the same rows again; at worst a few
// seq numbers are skipped (sequences are not transactional), never reused.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_ASSEMBLER_H_
#define EVENTSTREAM_SERVICES_PRODUCER_ASSEMBLER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libsync/rules/assembly_plan.h"
#include "libsync/base/backoff.h"
#include "libsync/model/doctype.h"
#include "libsync/rules/entry_builder.h"
#include "libsync/base/pg.h"
#include "libsync/rules/queue_vacuum.h"
#include "services/producer/initial_sync.h"
#include "services/producer/raw_change_store.h"

namespace eventstream {

// RawChange, LogEntry (entry_builder.h) and CaptureFailure (assembly_plan.h)
// are the assembler's vocabulary.

class Assembler {
 public:
  struct Options {
    int max_raw_rows = 5000;
    // Called after each COMMIT that wrote entries, once per (doctype,
    // update_type) with how many were written (metrics); null = none.
    std::function<void(const std::string& doctype, const std::string& update_type,
                       int count)>
        on_committed;
    // Called after each COMMIT, once per document recorded in
    // capture_error (metrics); null = none.
    std::function<void(const CaptureFailure&)> on_failed;
    // Called after each COMMIT that wrote entries, with them as logged and
    // the newest entry before them (the producer hands them to its log
    // tail, log_tail.h Append); null = none.
    RawChangeStore::LoggedSink on_logged;
  };
  explicit Assembler(DocTypeRegistry registry);
  Assembler(DocTypeRegistry registry, Options options);
  Assembler(const Assembler&) = delete;  // store_ points at registry_
  Assembler& operator=(const Assembler&) = delete;

  // One pass (see file comment). Returns the number of entries written; 0
  // when there was nothing to do or another assembler holds the lock.
  // `last_seq`, when given, receives the highest seq written (left alone
  // when none). `more`, when given, is set to whether raw rows were left
  // behind by the batch limit (call again at once). `consumed_rows`, when
  // given, receives how many raw rows the pass deleted.
  absl::StatusOr<int> AssembleOnce(pg::Connection* conn,
                                   int64_t* last_seq = nullptr,
                                   bool* more = nullptr,
                                   int64_t* consumed_rows = nullptr) const;

 private:
  // The entries and failures of the transactions `picked`, re-reading rows
  // that do not parse (in the pass's transaction).
  absl::StatusOr<PassOutcome> AssemblePicked(pg::Connection* conn,
                                             std::vector<TxRows>* picked) const;
  DocTypeRegistry registry_;
  Options options_;
  RawChangeStore store_;
};

// The "write these entries" step both capture paths share (the Assembler
// above and WalCapture, wal_capture.h), so both log alike.
// Records a pass's failures in capture_error (each source keeps its rows
// elsewhere: raw_change ids, or the rows themselves); sets record_id.
using FailureRecorder =
    std::function<absl::Status(pg::Connection*, std::vector<CaptureFailure>*)>;
// In the caller's transaction, which holds the assembler's lock
// (RawChangeStore::TryLock / Lock) so seqs follow commit order: the entries
// with a contiguous block of seqs (their data moved out), then the
// failures. Returns what was logged (end_seq 0: no entry). Nothing is
// visible until the caller commits; a crash before that writes nothing.
absl::StatusOr<RawChangeStore::Logged> WritePass(pg::Connection* conn, PassOutcome* pass,
                                                 const FailureRecorder& record_failures);
// After COMMIT: logs each failure and calls options.on_failed, counts the
// entries through options.on_committed, hands them to options.on_logged.
void ReportPass(const Assembler::Options& options, const PassOutcome& pass,
                RawChangeStore::Logged logged);

// Runs Assembler::AssembleOnce on its own thread and connection until
// stopped: again at once while there is backlog, else after a wait between
// busy_poll and idle_poll (or Wake()). Polling rather than LISTEN/NOTIFY: a NOTIFY from the capture
// trigger takes PostgreSQL's global notify-queue lock at every application
// commit, serializing the site's writers (measured with pgbench, 8 clients
// of single-row inserts on 2 cores: ~2200 tps without capture, ~1500 with
// the row trigger, ~280 with the row trigger plus a statement-level
// pg_notify); an idle poll costs one `SELECT EXISTS` per idle_poll. Database
// errors are logged once per failure streak (and on recovery), with exponential
// backoff up to max_backoff and a reconnect.
class AssemblerLoop {
 public:
  struct Options {
    std::string database_url;
    // The wait after a pass that wrote entries; each empty pass doubles it
    // up to idle_poll_ms (an idle site costs one query per idle_poll_ms).
    // Shorter is less lag but more assembler transactions competing with
    // the site's writers: tools/bench --docs 4000, one run each on 2 cores,
    // busy_poll 10 ms: lag at 200 docs/s p50 26 ms, writers with capture at
    // 0.71 (inserts) / 0.60 (updates) of without; 25 ms: 40 ms, 0.80 / 0.71.
    // The site's own write throughput matters more: 25.
    int busy_poll_ms = 25;
    int idle_poll_ms = 25;
    int max_backoff_ms = 2000;
    // When the loop vacuums raw_change itself (libsync/rules/queue_vacuum.h).
    // Measured with SiteRolesTest.DISABLED_MeasureQueueBloatAtMaxRate.
    QueueVacuumPolicy queue_vacuum;
  };
  // on_entries(last_seq) runs on the loop thread after each pass that wrote
  // entries; it must not block for long (the future notifier hands off).
  // With several replicas only the one whose pass wrote the entries calls
  // it; a notifier that must react to every entry in every replica has to
  // watch update_log's max(seq) itself.
  // `initial_sync` (optional, must outlive the loop) writes a chunk of a
  // ready initial sync after each pass (initial_sync.h); its failures are
  // logged and never hold up capture.
  AssemblerLoop(const Assembler* assembler, Options options,
                std::function<void(int64_t last_seq)> on_entries = nullptr,
                const InitialSyncWriter* initial_sync = nullptr);
  ~AssemblerLoop();  // Stop()
  AssemblerLoop(const AssemblerLoop&) = delete;
  AssemblerLoop& operator=(const AssemblerLoop&) = delete;

  void Start();
  // Returns after the current pass finished; idempotent.
  void Stop();
  // Skips the rest of the current idle wait.
  void Wake();

 private:
  // VACUUM of raw_change on the loop's connection (between passes) when
  // `vacuum` says it is due (VacuumQueueIfDue).
  void VacuumQueue(pg::Connection* conn, QueueVacuumPlanner* vacuum);
  // Retry after a failed pass: 50 ms doubling up to max_backoff_ms.
  static BackoffPolicy RetryPolicy(const Options& options);
  void Run();

  // One chunk of initial sync; whether it did work. Logs a failure once per
  // streak.
  bool SyncChunk(pg::Connection* conn, std::string* last_error);

  const Assembler* assembler_;
  Options options_;
  std::function<void(int64_t)> on_entries_;
  const InitialSyncWriter* initial_sync_;
  InterruptibleSleeper sleeper_;  // Stop() and Wake() end its waits
  absl::Mutex thread_mu_;         // Start/Stop against each other
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_ASSEMBLER_H_
