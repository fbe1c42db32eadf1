#include "services/consumer/sync_log_trimmer.h"

#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// $1 the cutoff, $2 the batch size. Oldest first, through the primary key.
constexpr pg::Query kTrimBatch{
    "consumer_sync_log_trim",
    "DELETE FROM es_consumer.sync_log WHERE id IN (SELECT id FROM es_consumer.sync_log"
    " WHERE status = 'Synced' AND created_at < $1::timestamptz ORDER BY id LIMIT $2)"};

// Same-name copies the applier released (deleted here) before $1: as long
// as the sync log keeps its rows, and no longer. $2 the batch size.
constexpr pg::Query kTrimReleasedCopies{
    "consumer_same_name_copy_trim",
    "DELETE FROM es_consumer.same_name_copy WHERE ctid IN (SELECT ctid"
    " FROM es_consumer.same_name_copy WHERE released_at < $1::timestamptz LIMIT $2)"};

// Not prepared: VACUUM cannot be (nor run inside a transaction block).
constexpr pg::Query kVacuum{"consumer_sync_log_vacuum", "VACUUM es_consumer.sync_log"};

}  // namespace

absl::StatusOr<int64_t> SyncLogTrimmer::TrimBatches(pg::Connection* conn, const pg::Query& query,
                                                    const std::string& cutoff) {
  int64_t total = 0;
  for (;;) {
    // Each batch its own (autocommit) statement: short, never one long
    // transaction holding back vacuum or the applier.
    ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(query, {cutoff, options_.batch}));
    const int64_t n = r.affected_rows();
    total += n;
    if (n < options_.batch || sleeper_.stopped()) return total;
  }
}

absl::StatusOr<int64_t> SyncLogTrimmer::TrimOnce(absl::Time now) {
  if (options_.retention <= absl::ZeroDuration()) return 0;
  const std::string cutoff = absl::FormatTime(absl::RFC3339_full, now - options_.retention,
                                              absl::UTCTimeZone());
  ASSIGN_OR_RETURN(auto conn, pool_->Acquire());
  ASSIGN_OR_RETURN(const int64_t total, TrimBatches(conn.get(), kTrimBatch, cutoff));
  if (options_.trimmed != nullptr && total > 0) {
    options_.trimmed->Increment(static_cast<double>(total));
  }
  ASSIGN_OR_RETURN(const int64_t released, TrimBatches(conn.get(), kTrimReleasedCopies, cutoff));
  if (released > 0) {
    spdlog::info("sync log: forgot {} same-name copies deleted here more than {} ago", released,
                 absl::FormatDuration(options_.retention));
  }
  if (total > 0) {
    spdlog::info("sync log: deleted {} Synced rows older than {}", total,
                 absl::FormatDuration(options_.retention));
  }
  // After the deletes committed: a crash before or during the VACUUM loses
  // nothing (autovacuum, or the next due pass, reclaims the dead rows).
  vacuum_.Consumed(total);
  pg::Connection* c = conn.get();
  VacuumQueueIfDue(
      &vacuum_, [now] { return now; }, [c] { return c->Exec(kVacuum).status(); },
      {"sync log retention", "es_consumer.sync_log", /*success_at_info=*/true});
  return total;
}

void SyncLogTrimmer::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_.joinable() || options_.retention <= absl::ZeroDuration()) return;
  sleeper_.Resume();
  thread_ = std::thread([this] {
    Backoff backoff(BackoffPolicy{absl::Seconds(1), options_.interval, 2.0, 0.0});
    RunLoop(sleeper_, backoff,
            [this]() -> absl::StatusOr<absl::Duration> {
              RETURN_IF_ERROR(TrimOnce(sleeper_.Now()).status());
              return options_.interval;
            },
            {[](const absl::Status& status, int failures) {
               if (failures == 1) {
                 spdlog::warn("sync log retention: {}; retrying with backoff",
                              std::string(status.message()));
               }
             },
             [](int) { spdlog::info("sync log retention: working again"); }});
  });
}

void SyncLogTrimmer::Stop() {
  sleeper_.Stop();
  absl::MutexLock lock(&mu_);
  if (thread_.joinable()) thread_.join();
}

}  // namespace eventstream
