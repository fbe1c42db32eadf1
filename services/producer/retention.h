// Update log retention (docs/design.md "Retention"; issue 15 item 1).
//
// RetentionStore runs the SQL: it reads what the planner
// (libsync/rules/retention_plan.h) needs, records a trim point, and deletes one
// batch. RetentionLoop wires them on its own thread and connection, once
// per producer.retention.interval (RunLoop, libsync/base/backoff.h), under a
// session advisory lock so one replica trims at a time.
//
// Crash safety, write by write:
//  * Mark (one transaction): log_state.trimmed_through and the cut-off
//    consumers' lost_through move up together, BEFORE any entry they cover
//    is deleted. Killed before COMMIT: nothing recorded, nothing deleted.
//    Killed after: the entries may still be there, but the consumers that
//    needed them are already refused ("log trimmed:") and re-sync; the next
//    pass deletes on up to the recorded point.
//  * DeleteBatch (one statement, its own transaction): at most `batch`
//    entries with seq <= min(horizon, log_state.trimmed_through), through
//    the seq index. Killed mid-way: a prefix of the range is gone, which the
//    recorded mark already covered; the rest goes next pass.
//  Never blocking capture or pulls: the deletes lock only old rows, which
//  no writer updates; each batch is a short transaction.
// After passes that deleted Options::vacuum.min_dead_rows entries in all,
// the loop VACUUMs update_log itself (libsync/rules/queue_vacuum.h), so its
// bytes stay bounded even when autovacuum's statistics were lost (a crash
// or immediate stop resets them); a failed VACUUM is only logged (once per
// streak, VacuumQueueIfDue).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_RETENTION_H_
#define EVENTSTREAM_SERVICES_PRODUCER_RETENTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "libsync/base/backoff.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/rules/queue_vacuum.h"
#include "libsync/rules/retention_plan.h"
#include "services/producer/producer_metrics.h"

namespace eventstream {

class RetentionStore {
 public:
  // The planner's input as of now (ComputeRetentionCutoffs for the times).
  static absl::StatusOr<RetentionInput> ReadInput(pg::Connection* conn,
                                                  const RetentionCutoffs& cutoffs,
                                                  int64_t max_entries);
  // Records plan.horizon and cuts off plan.behind (see file comment).
  static absl::Status Mark(pg::Connection* conn, const RetentionPlan& plan);
  // Entries in (from, to] logged for every consumer (for_site NULL): the
  // webhook requests a valve trim skips.
  static absl::StatusOr<int64_t> CountShared(pg::Connection* conn, int64_t from, int64_t to);
  // Deletes up to `batch` of the oldest entries with seq <= `through` (and
  // never past the recorded trim point); how many it deleted.
  static absl::StatusOr<int64_t> DeleteBatch(pg::Connection* conn, int64_t through, int batch);
  // One replica trims at a time: a session lock, released by Unlock or
  // when the connection closes.
  static absl::StatusOr<bool> TryLock(pg::Connection* conn);
  static absl::Status Unlock(pg::Connection* conn);
  // VACUUM of update_log (plain: writers and readers go on).
  static absl::Status Vacuum(pg::Connection* conn);
};

class RetentionLoop {
 public:
  struct Options {
    std::string database_url;
    RetentionConfig policy;
    ProducerMetrics* metrics = nullptr;  // may be null; must outlive the loop
    QueueVacuumPolicy vacuum{10000, absl::Minutes(1)};
  };
  explicit RetentionLoop(Options options) : options_(std::move(options)) {}
  ~RetentionLoop();  // Stop()
  RetentionLoop(const RetentionLoop&) = delete;
  RetentionLoop& operator=(const RetentionLoop&) = delete;

  void Start();
  // Returns after the batch in flight; idempotent.
  void Stop();

  // One pass on `conn` (exposed for tests): plan, mark, delete in batches
  // until the horizon or `sleeper` stops. Returns the entries deleted.
  static absl::StatusOr<int64_t> Pass(pg::Connection* conn, const Options& options,
                                      absl::Time now, Sleeper* sleeper = nullptr);
  // VACUUMs update_log when `vacuum` says it is due (exposed for tests);
  // whether it did.
  static bool VacuumIfDue(pg::Connection* conn, QueueVacuumPlanner* vacuum, absl::Time now);

 private:
  void Run();
  // Logs and counts what a mark decided (once per mark).
  static void Report(const RetentionPlan& plan, int64_t skipped, const Options& options);

  Options options_;
  InterruptibleSleeper sleeper_;
  absl::Mutex thread_mu_;
  std::thread thread_ ABSL_GUARDED_BY(thread_mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_RETENTION_H_
