#include "services/producer/retention.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libsync/base/status_macros.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// The log's end, the recorded trim point and the lowest webhook cursor
// (NULL without webhooks; migrations/producer/0007).
constexpr pg::Query kEnds{
    "es_retention_ends",
    "SELECT coalesce((SELECT max(seq) FROM es_producer.update_log), 0) AS end_seq,"
    " (SELECT trimmed_through FROM es_producer.log_state) AS trimmed_through,"
    " (SELECT min(last_seq) FROM es_producer.webhook_cursor) AS webhook_cursor"};
// The newest entry created at or before $1 (min_age): a backward scan of
// the seq index over the young entries only.
constexpr pg::Query kOldEnough{
    "es_retention_old_enough",
    "SELECT coalesce((SELECT seq FROM es_producer.update_log WHERE created_at <= $1::timestamptz"
    "                 ORDER BY seq DESC LIMIT 1), 0) AS seq"};
// The newest entry before the first one created at or after $1 (max_age):
// a forward scan over the entries older than the valve only.
constexpr pg::Query kValve{
    "es_retention_valve",
    "SELECT coalesce((SELECT seq - 1 FROM es_producer.update_log"
    "                 WHERE created_at >= $1::timestamptz ORDER BY seq LIMIT 1),"
    "                (SELECT max(seq) FROM es_producer.update_log), 0) AS seq"};
// Per consumer: its position, the trim point that cut it off, and the first
// entry after its position it would be sent (seq <= $1 only: beyond it
// nothing is deleted anyway). Own-origin entries are never sent back.
constexpr pg::Query kConsumers{
    "es_retention_consumers",
    "SELECT c.site, c.acknowledged_seq, c.lost_through,"
    " (SELECT u.seq FROM es_producer.update_log u"
    "  WHERE u.seq > c.acknowledged_seq AND u.seq <= $1"
    "    AND (u.for_site = c.site"
    "         OR (u.for_site IS NULL AND u.origin IS DISTINCT FROM c.site"
    "             AND u.doctype IN (SELECT d.doctype FROM es_producer.consumer_doctype d"
    "                               WHERE d.site = c.site AND d.status = 'approved'"
    "                                 AND NOT d.unsubscribed)))"
    "  ORDER BY u.seq LIMIT 1) AS first_needed"
    " FROM es_producer.consumer c ORDER BY c.site"};
constexpr pg::Query kMarkLog{
    "es_retention_mark_log",
    "UPDATE es_producer.log_state SET trimmed_through = greatest(trimmed_through, $1),"
    " trimmed_at = now()"};
// A consumer that pulled past the horizon since it was read got everything
// it needed: it is not cut off.
constexpr pg::Query kMarkConsumers{
    "es_retention_mark_consumers",
    "UPDATE es_producer.consumer SET lost_through = greatest(lost_through, $1)"
    " WHERE site = ANY($2::text[]) AND acknowledged_seq < $1"};
constexpr pg::Query kCountShared{
    "es_retention_count_shared",
    "SELECT count(*) AS n FROM es_producer.update_log"
    " WHERE seq > $1 AND seq <= $2 AND for_site IS NULL"};
constexpr pg::Query kDeleteBatch{
    "es_retention_delete",
    "DELETE FROM es_producer.update_log WHERE seq IN ("
    " SELECT seq FROM es_producer.update_log"
    " WHERE seq <= least($1::bigint, (SELECT trimmed_through FROM es_producer.log_state))"
    " ORDER BY seq LIMIT $2)"};
constexpr pg::Query kTryLock{
    "es_retention_try_lock",
    "SELECT pg_try_advisory_lock(hashtext('es_producer.retention')) AS locked"};
constexpr pg::Query kVacuum{"es_retention_vacuum", "VACUUM es_producer.update_log"};
constexpr pg::Query kUnlock{"es_retention_unlock",
                            "SELECT pg_advisory_unlock(hashtext('es_producer.retention'))"};

std::string TimeParam(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_full, t, absl::UTCTimeZone());
}

int64_t IntAt(const pg::Result& r, int row, const char* column) {
  return r.GetInt64(row, r.ColumnIndex(column));
}

}  // namespace

absl::StatusOr<RetentionInput> RetentionStore::ReadInput(pg::Connection* conn,
                                                         const RetentionCutoffs& cutoffs,
                                                         int64_t max_entries) {
  RetentionInput in;
  in.max_entries = max_entries;
  ASSIGN_OR_RETURN(pg::Result ends, conn->ExecPrepared(kEnds));
  in.end_seq = IntAt(ends, 0, "end_seq");
  in.trimmed_through = IntAt(ends, 0, "trimmed_through");
  if (!ends.IsNull(0, ends.ColumnIndex("webhook_cursor"))) {
    in.webhook_cursor = IntAt(ends, 0, "webhook_cursor");
  }
  ASSIGN_OR_RETURN(pg::Result old, conn->ExecPrepared(kOldEnough, {TimeParam(cutoffs.keep_after)}));
  in.old_enough_seq = IntAt(old, 0, "seq");
  if (cutoffs.valve_before) {
    ASSIGN_OR_RETURN(pg::Result valve,
                     conn->ExecPrepared(kValve, {TimeParam(*cutoffs.valve_before)}));
    in.valve_seq = IntAt(valve, 0, "seq");
  }
  // Nothing past the hard limits goes, so nobody's needs beyond them matter.
  const int64_t scan_to = std::min(in.end_seq - 1, in.old_enough_seq);
  ASSIGN_OR_RETURN(pg::Result c, conn->ExecPrepared(kConsumers, {scan_to}));
  for (int i = 0; i < c.rows(); ++i) {
    ConsumerPosition p;
    p.site = std::string(c.Get(i, "site"));
    p.acknowledged_seq = IntAt(c, i, "acknowledged_seq");
    p.lost_through = IntAt(c, i, "lost_through");
    if (!c.IsNull(i, c.ColumnIndex("first_needed"))) p.first_needed = IntAt(c, i, "first_needed");
    in.consumers.push_back(std::move(p));
  }
  return in;
}

absl::Status RetentionStore::Mark(pg::Connection* conn, const RetentionPlan& plan) {
  std::vector<std::string> sites;
  for (const Behind& b : plan.behind) sites.push_back(b.site);
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn));
  RETURN_IF_ERROR(conn->ExecPrepared(kMarkLog, {plan.horizon}).status());
  if (!sites.empty()) {
    RETURN_IF_ERROR(
        conn->ExecPrepared(kMarkConsumers, {plan.horizon, pg::TextArray(sites)}).status());
  }
  return tx->Commit();
}

absl::StatusOr<int64_t> RetentionStore::CountShared(pg::Connection* conn, int64_t from,
                                                    int64_t to) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kCountShared, {from, to}));
  return IntAt(r, 0, "n");
}

absl::StatusOr<int64_t> RetentionStore::DeleteBatch(pg::Connection* conn, int64_t through,
                                                    int batch) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kDeleteBatch, {through, batch}));
  return r.affected_rows();
}

absl::StatusOr<bool> RetentionStore::TryLock(pg::Connection* conn) {
  ASSIGN_OR_RETURN(pg::Result r, conn->ExecPrepared(kTryLock));
  return r.GetBool(0, r.ColumnIndex("locked"));
}

absl::Status RetentionStore::Unlock(pg::Connection* conn) {
  return conn->ExecPrepared(kUnlock).status();
}

absl::Status RetentionStore::Vacuum(pg::Connection* conn) {
  // Not prepared: VACUUM cannot be.
  return conn->Exec(kVacuum).status();
}

void RetentionLoop::Report(const RetentionPlan& plan, int64_t skipped, const Options& options) {
  for (const Behind& b : plan.behind) {
    if (!b.newly) continue;  // told when it was cut off
    spdlog::warn("retention: consumer {} is cut off: it acknowledged seq {} and still needed "
                 "seq {}, but the log is trimmed through seq {} (producer.retention max_age / "
                 "max_entries); its next pull is refused and it re-syncs",
                 b.site, b.acknowledged_seq, b.first_needed, plan.horizon);
    if (options.metrics) options.metrics->consumers_cut_off->WithLabels({b.site}).Increment();
  }
  if (skipped > 0) {
    spdlog::warn("retention: webhook delivery was behind; {} entries in seqs {}..{} are "
                 "trimmed before their webhook requests were created and are skipped",
                 skipped, plan.webhooks_skip_from + 1, plan.webhooks_skip_to);
    if (options.metrics) {
      options.metrics->webhook_entries_skipped->WithLabels({}).Increment(
          static_cast<double>(skipped));
    }
  }
}

absl::StatusOr<int64_t> RetentionLoop::Pass(pg::Connection* conn, const Options& options,
                                            absl::Time now, Sleeper* sleeper) {
  ASSIGN_OR_RETURN(bool locked, RetentionStore::TryLock(conn));
  if (!locked) return 0;  // another replica trims
  absl::StatusOr<int64_t> deleted = [&]() -> absl::StatusOr<int64_t> {
    ASSIGN_OR_RETURN(RetentionInput in,
                     RetentionStore::ReadInput(conn, ComputeRetentionCutoffs(options.policy, now),
                                               options.policy.max_entries));
    const RetentionPlan plan = PlanRetention(in);
    if (plan.horizon > in.trimmed_through) {
      int64_t skipped = 0;
      if (plan.webhooks_skip_to > 0) {
        ASSIGN_OR_RETURN(skipped, RetentionStore::CountShared(conn, plan.webhooks_skip_from,
                                                              plan.webhooks_skip_to));
      }
      RETURN_IF_ERROR(RetentionStore::Mark(conn, plan));
      Report(plan, skipped, options);
    }
    int64_t total = 0;
    while (sleeper == nullptr || !sleeper->stopped()) {
      ASSIGN_OR_RETURN(int64_t n,
                       RetentionStore::DeleteBatch(conn, plan.horizon, options.policy.batch));
      total += n;
      if (options.metrics && n > 0) {
        options.metrics->trimmed_entries->WithLabels({}).Increment(static_cast<double>(n));
      }
      if (n < options.policy.batch) break;
    }
    if (total > 0) {
      spdlog::info("retention: deleted {} update log entries through seq {} (held by {})", total,
                   plan.horizon, plan.held_by.empty() ? "nothing" : plan.held_by);
    }
    return total;
  }();
  absl::Status unlocked = RetentionStore::Unlock(conn);
  RETURN_IF_ERROR(deleted.status());
  RETURN_IF_ERROR(unlocked);
  return deleted;
}

bool RetentionLoop::VacuumIfDue(pg::Connection* conn, QueueVacuumPlanner* vacuum, absl::Time now) {
  return VacuumQueueIfDue(
      vacuum, [now] { return now; }, [conn] { return RetentionStore::Vacuum(conn); },
      {"retention", "update_log", /*success_at_info=*/true});
}

RetentionLoop::~RetentionLoop() { Stop(); }

void RetentionLoop::Start() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  sleeper_.Resume();
  thread_ = std::thread([this] { Run(); });
}

void RetentionLoop::Stop() {
  sleeper_.Stop();
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) thread_.join();
}

void RetentionLoop::Run() {
  std::unique_ptr<pg::Connection> conn;
  QueueVacuumPlanner vacuum(options_.vacuum);
  auto pass = [&]() -> absl::StatusOr<absl::Duration> {
    if (conn == nullptr || !conn->ok()) {
      conn.reset();
      ASSIGN_OR_RETURN(conn, pg::Connection::Open(options_.database_url));
      RETURN_IF_ERROR(conn->SetApplicationName("eventstream-retention"));
    }
    absl::StatusOr<int64_t> deleted = Pass(conn.get(), options_, sleeper_.Now(), &sleeper_);
    if (!deleted.ok()) {
      if (!conn->ok()) conn.reset();
      return deleted.status();
    }
    vacuum.Consumed(*deleted);
    VacuumIfDue(conn.get(), &vacuum, sleeper_.Now());
    return options_.policy.interval;
  };
  Backoff backoff({absl::Seconds(1), std::max(absl::Seconds(1), options_.policy.interval), 2.0,
                   0.2});
  LoopHooks hooks;
  hooks.on_failure = [](const absl::Status& s, int failures) {
    if (failures == 1) {
      spdlog::warn("retention: {}; retrying with backoff (logged again once it works)",
                   std::string(s.message()));
    }
  };
  hooks.on_recovery = [](int failures) {
    spdlog::info("retention: working again after {} failed passes", failures);
  };
  RunLoop(sleeper_, backoff, pass, hooks);
}

}  // namespace eventstream
