// SyncLogTrimmer: keeps the Event Sync Log bounded (issue 15 item 3;
// docs/design.md "Retention"). Every `interval` (the service uses
// SyncLogTrimInterval, libsync/rules/retention_plan.h) it deletes Synced rows older
// than consumer.sync_log_retention, `batch` rows per short transaction
// through the primary key, until none is left. Failed and Parked rows stay
// until resolved (Resync turns them Synced; they age from their creation).
// Released same-name copies (es_consumer.same_name_copy rows of copies
// deleted here) are forgotten after the same time.
// Nothing depends on old rows: exactly-once rests on the watermark alone
// (libsync/rules/batch_plan.h), so a deleted row can never make an entry apply
// twice. Dying between batches leaves older rows for the next pass.
// Every replica may run it; deletes of the same rows simply overlap.
// Once its passes deleted Options::vacuum.min_dead_rows sync log rows (and
// not more often than its min_interval) it VACUUMs es_consumer.sync_log
// itself (libsync/rules/queue_vacuum.h), so the table's bytes stay bounded
// when autovacuum lags (a PostgreSQL crash resets its statistics); a failed
// VACUUM is only logged, once per streak.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_SYNC_LOG_TRIMMER_H_
#define EVENTSTREAM_SERVICES_CONSUMER_SYNC_LOG_TRIMMER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/base/backoff.h"
#include "libsync/base/metrics.h"
#include "libsync/base/pg_pool.h"
#include "libsync/rules/queue_vacuum.h"

namespace eventstream {

class SyncLogTrimmer {
 public:
  struct Options {
    absl::Duration retention = absl::Hours(24 * 30);  // zero: never trims
    absl::Duration interval = absl::Minutes(10);
    int batch = 1000;
    metrics::Counter* trimmed = nullptr;  // rows deleted; null = not counted
    // When the trimmer VACUUMs the sync log (as the producer's update_log).
    QueueVacuumPolicy vacuum{10000, absl::Minutes(1)};
  };
  SyncLogTrimmer(std::shared_ptr<pg::ConnectionPool> pool, Options options)
      : pool_(std::move(pool)), options_(options), vacuum_(options.vacuum) {}
  ~SyncLogTrimmer() { Stop(); }

  // One pass: deletes every Synced row created before `now - retention`, in
  // batches, then VACUUMs the sync log when that is due at `now`; returns
  // how many rows it deleted. Thread-compatible.
  absl::StatusOr<int64_t> TrimOnce(absl::Time now);

  void Start();  // a thread running TrimOnce every interval (not with zero retention)
  void Stop();   // idempotent

 private:
  // Runs `query` ($1 cutoff, $2 batch) until a batch deletes fewer rows.
  absl::StatusOr<int64_t> TrimBatches(pg::Connection* conn, const pg::Query& query,
                                      const std::string& cutoff);

  std::shared_ptr<pg::ConnectionPool> pool_;
  const Options options_;
  QueueVacuumPlanner vacuum_;  // TrimOnce's (thread-compatible, as it is)
  InterruptibleSleeper sleeper_;
  absl::Mutex mu_;
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_SYNC_LOG_TRIMMER_H_
