#include "services/producer/producer_metrics.h"

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "libsync/base/pg.h"
#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

using metrics::Sample;

// One row per consumer: its site, the entries it lags by and the age of the
// oldest of them.
constexpr pg::Query kLag{
    "metrics_consumer_lag",
    "SELECT c.site, l.n AS entries,"
    "  coalesce(extract(epoch FROM clock_timestamp() - l.oldest), 0)::float8 AS seconds"
    " FROM es_producer.consumer c"
    " CROSS JOIN LATERAL ("
    "   SELECT count(*) AS n, min(u.created_at) AS oldest"
    "   FROM es_producer.update_log u"
    "   WHERE u.seq > c.acknowledged_seq"
    "     AND u.origin IS DISTINCT FROM c.site"
    "     AND (u.for_site IS NULL OR u.for_site = c.site)"
    "     AND u.doctype IN (SELECT d.doctype FROM es_producer.consumer_doctype d"
    "                        WHERE d.site = c.site AND d.status = 'approved'"
    "                          AND NOT d.unsubscribed)) l"
    " ORDER BY c.site"};

constexpr pg::Query kSyncJobs{
    "metrics_sync_jobs",
    "SELECT site, doctype, state, done, coalesce(total, 0) AS total"
    " FROM es_producer.sync_job ORDER BY site, doctype"};

// The producer's tables: rows (estimate) or bytes, per table.
constexpr pg::Query kTables{
    "metrics_tables",
    "SELECT t.name, c.reltuples::float8 AS rows,"
    "  pg_total_relation_size(c.oid)::float8 AS bytes"
    " FROM unnest(ARRAY['update_log', 'raw_change', 'holding', 'holding_change', 'sync_job',"
    "                   'webhook_request']) AS t(name)"
    " JOIN pg_class c ON c.oid = to_regclass('es_producer.' || t.name)"
    " ORDER BY t.name"};

// Gauges with one label: per row its `label` and number `n`.
constexpr pg::Query kHeldBack{
    "metrics_held_back",
    "SELECT c.site AS label, greatest(0, l.end_seq - c.acknowledged_seq) AS n"
    " FROM es_producer.consumer c,"
    "  (SELECT coalesce(max(seq), 0) AS end_seq FROM es_producer.update_log) l"
    " ORDER BY c.site"};
// Per logical slot of this database read with pgoutput (capture: wal's):
// the WAL it keeps the server from recycling.
constexpr pg::Query kWalRetained{
    "metrics_wal_retained",
    "SELECT slot_name AS label,"
    " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint AS n"
    " FROM pg_replication_slots WHERE database = current_database()"
    " AND plugin = 'pgoutput' ORDER BY slot_name"};

// The gauges without labels: one number each, in the column `value`.
constexpr pg::Query kCaptureErrorRecords{
    "metrics_capture_error_records",
    "SELECT count(*) AS value FROM es_producer.capture_error"};
constexpr pg::Query kLogPosition{
    "metrics_log_position",
    "SELECT coalesce(max(seq), 0) AS value FROM es_producer.update_log"};
constexpr pg::Query kWebhookBacklog{
    "metrics_webhook_backlog",
    "SELECT count(*) AS value FROM es_producer.update_log WHERE seq >"
    " (SELECT min(last_seq) FROM es_producer.webhook_cursor)"};
constexpr pg::Query kLogTrimmedThrough{
    "metrics_log_trimmed_through",
    "SELECT trimmed_through AS value FROM es_producer.log_state"};
constexpr pg::Query kLogOldestEntrySeconds{
    "metrics_log_oldest_entry",
    "SELECT coalesce(extract(epoch FROM clock_timestamp() - created_at),"
    " 0)::bigint AS value FROM (SELECT NULL) AS one LEFT JOIN LATERAL"
    " (SELECT created_at FROM es_producer.update_log ORDER BY seq LIMIT 1)"
    " AS u ON true"};
constexpr pg::Query kWebhookQueuedRequests{
    "metrics_webhook_queued",
    "SELECT count(*) AS value FROM es_producer.webhook_request"
    " WHERE status = 'Queued'"};

// Per consumer: kLag's `column`, "entries" or "seconds".
absl::StatusOr<std::vector<Sample>> Lag(pg::ConnectionPool* pool, const char* column) {
  const bool entries = std::string_view(column) == "entries";
  ASSIGN_OR_RETURN(auto conn, pool->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kLag));
  std::vector<Sample> out;
  for (int i = 0; i < r.rows(); ++i) {
    double v = entries ? static_cast<double>(r.GetInt64(i, column))
                       : std::stod(std::string(r.Get(i, column)));
    out.push_back(Sample{{std::string(r.Get(i, "site"))}, v < 0 ? 0 : v});
  }
  return out;
}

// Initial syncs (es_producer.sync_job): documents examined and in all, per
// consumer and DocType.
absl::StatusOr<std::vector<Sample>> InitialSync(pg::ConnectionPool* pool) {
  ASSIGN_OR_RETURN(auto conn, pool->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kSyncJobs));
  std::vector<Sample> out;
  for (int i = 0; i < r.rows(); ++i) {
    const std::string site(r.Get(i, "site")), doctype(r.Get(i, "doctype"));
    out.push_back(Sample{{site, doctype, "done"},
                         static_cast<double>(r.GetInt64(i, "done"))});
    out.push_back(Sample{{site, doctype, "total"},
                         static_cast<double>(r.GetInt64(i, "total"))});
    out.push_back(Sample{{site, doctype, "running"}, r.Get(i, "state") == "running" ? 1.0 : 0.0});
  }
  return out;
}

absl::StatusOr<std::vector<Sample>> Tables(pg::ConnectionPool* pool, const char* column) {
  ASSIGN_OR_RETURN(auto conn, pool->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kTables));
  std::vector<Sample> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(Sample{{std::string(r.Get(i, "name"))}, std::stod(std::string(r.Get(i, column)))});
  }
  return out;
}

// A gauge with one label: `query`'s rows (kHeldBack, kWalRetained).
absl::StatusOr<std::vector<Sample>> Labelled(pg::ConnectionPool* pool, const pg::Query& query) {
  ASSIGN_OR_RETURN(auto conn, pool->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(query));
  std::vector<Sample> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back(Sample{{std::string(r.Get(i, "label"))},
                         static_cast<double>(r.GetInt64(i, "n"))});
  }
  return out;
}

// A gauge without labels: the number `query` answers in its column `value`,
// at scrape time.
std::function<absl::StatusOr<std::vector<Sample>>()> ScalarGauge(
    std::shared_ptr<pg::ConnectionPool> pool, const pg::Query& query) {
  return [pool = std::move(pool), query]() -> absl::StatusOr<std::vector<Sample>> {
    ASSIGN_OR_RETURN(auto conn, pool->Acquire());
    ASSIGN_OR_RETURN(pg::Result r, conn->Exec(query));
    return std::vector<Sample>{Sample{{}, static_cast<double>(r.GetInt64(0, "value"))}};
  };
}

// One counter of the notifier's per-consumer stats (`field`), by consumer.
std::function<absl::StatusOr<std::vector<Sample>>()> NotifyCounter(
    const std::shared_ptr<Notifier>& notifier, int64_t Notifier::TargetStats::*field) {
  return [notifier, field]() -> absl::StatusOr<std::vector<Sample>> {
    std::vector<Sample> out;
    for (const auto& [site, t] : notifier->stats().targets)
      out.push_back(Sample{{site}, static_cast<double>(t.*field)});
    return out;
  };
}

// The families computed at scrape time, in the order /metrics shows them.
void AddScrapeGauges(metrics::Registry* registry, const std::shared_ptr<pg::ConnectionPool>& pool,
                     const std::shared_ptr<Notifier>& notifier) {
  registry->AddCallback("eventstream_producer_capture_error_records",
                        "Rows in es_producer.capture_error: capture failures not yet dealt "
                        "with.",
                        metrics::Type::kGauge, {},
                        ScalarGauge(pool, kCaptureErrorRecords));
  if (notifier) {
    registry->AddCallback("eventstream_producer_notify_calls_total",
                          "Notify calls started to each consumer (since its address or token "
                          "last changed); none while it streams from this replica.",
                          metrics::Type::kCounter, {"consumer"},
                          NotifyCounter(notifier, &Notifier::TargetStats::attempts));
    registry->AddCallback("eventstream_producer_notify_failures_total",
                          "Failed Notify calls to each consumer (since its address or token last "
                          "changed).",
                          metrics::Type::kCounter, {"consumer"},
                          NotifyCounter(notifier, &Notifier::TargetStats::failures));
  }
  registry->AddCallback("eventstream_producer_initial_sync_documents",
                        "Initial syncs (issue 14): documents examined (of=\"done\"), in the "
                        "DocType when it started (of=\"total\"), and 1 while running "
                        "(of=\"running\").",
                        metrics::Type::kGauge, {"consumer", "doctype", "of"},
                        [pool] { return InitialSync(pool.get()); });
  registry->AddCallback("eventstream_producer_consumer_lag_entries",
                        "Update log entries of the consumer's approved DocTypes after its "
                        "acknowledged position.",
                        metrics::Type::kGauge, {"consumer"}, [pool] { return Lag(pool.get(), "entries"); });
  registry->AddCallback("eventstream_producer_consumer_lag_seconds",
                        "Age of the oldest entry the consumer has not acknowledged (0 when "
                        "none).",
                        metrics::Type::kGauge, {"consumer"}, [pool] { return Lag(pool.get(), "seconds"); });
  registry->AddCallback("eventstream_producer_log_position",
                        "The highest seq in the Event Update Log.", metrics::Type::kGauge, {},
                        ScalarGauge(pool, kLogPosition));
  registry->AddCallback("eventstream_producer_webhook_backlog_entries",
                        "Event Update Log entries after the lowest webhook cursor (0 without "
                        "webhooks): what webhook delivery has still to look at.",
                        metrics::Type::kGauge, {},
                        ScalarGauge(pool, kWebhookBacklog));
  registry->AddCallback("eventstream_producer_log_trimmed_through",
                        "The recorded trim point: entries up to it may be deleted.",
                        metrics::Type::kGauge, {},
                        ScalarGauge(pool, kLogTrimmedThrough));
  registry->AddCallback(
      "eventstream_producer_log_oldest_entry_seconds",
      "Age of the oldest update log entry kept (0 when empty).", metrics::Type::kGauge, {},
      ScalarGauge(pool, kLogOldestEntrySeconds));
  registry->AddCallback("eventstream_producer_consumer_held_back_entries",
                        "The log's end minus the consumer's acknowledged position.",
                        metrics::Type::kGauge, {"consumer"},
                        [pool] { return Labelled(pool.get(), kHeldBack); });
  registry->AddCallback("eventstream_producer_wal_retained_bytes",
                        "WAL the logical slot keeps (pg_current_wal_lsn() - restart_lsn); "
                        "bound it with max_slot_wal_keep_size.",
                        metrics::Type::kGauge, {"slot"},
                        [pool] { return Labelled(pool.get(), kWalRetained); });
  registry->AddCallback("eventstream_producer_table_rows",
                        "Rows of the producer's tables (PostgreSQL's estimate, reltuples).",
                        metrics::Type::kGauge, {"table"},
                        [pool] { return Tables(pool.get(), "rows"); });
  registry->AddCallback(
      "eventstream_producer_table_bytes", "Bytes of the producer's tables with indexes and TOAST.",
      metrics::Type::kGauge, {"table"}, [pool] { return Tables(pool.get(), "bytes"); });
  registry->AddCallback("eventstream_producer_webhook_queued_requests",
                        "Webhook requests waiting for a (re)try: after a failed attempt, or "
                        "behind one of the same webhook and document.",
                        metrics::Type::kGauge, {},
                        ScalarGauge(pool, kWebhookQueuedRequests));
}

}  // namespace

ProducerMetrics::ProducerMetrics(std::shared_ptr<pg::ConnectionPool> pool,
                                 std::shared_ptr<Notifier> notifier) {
  captured = registry.AddCounter("eventstream_producer_entries_captured_total",
                                 "Event Update Log entries committed by this replica's "
                                 "assembler.",
                                 {"doctype", "update_type"});
  capture_errors = registry.AddCounter(
      "eventstream_producer_capture_errors_total",
      "Documents this replica's assembler could not turn into an entry (recorded in "
      "es_producer.capture_error).",
      {"doctype"});
  pulls = registry.AddCounter("eventstream_producer_pulls_total",
                              "PullUpdates calls served by this replica.", {"consumer"});
  pulled = registry.AddCounter("eventstream_producer_entries_pulled_total",
                               "Entries returned by PullUpdates.", {"consumer"});
  pull_seconds = registry.AddHistogram("eventstream_producer_pull_duration_seconds",
                                       "Time to serve one PullUpdates call.", {"consumer"},
                                       metrics::LatencyBuckets());
  open_streams = registry.AddGauge("eventstream_producer_open_streams",
                                   "StreamUpdates calls open on this replica.", {});
  open_streams->WithLabels({}).Set(0);
  dependency_statements = registry.AddCounter(
      "eventstream_producer_dependency_statements_total",
      "Database statements run to answer GetDocument and FindDocuments.", {});
  trimmed_entries = registry.AddCounter("eventstream_producer_log_trimmed_entries_total",
                                        "Update log entries deleted by this replica's "
                                        "retention loop.",
                                        {});
  consumers_cut_off = registry.AddCounter(
      "eventstream_producer_consumers_cut_off_total",
      "Times the retention valve trimmed entries the consumer still needed.", {"consumer"});
  trimmed_pulls = registry.AddCounter("eventstream_producer_log_trimmed_pulls_total",
                                      "Pulls answered FAILED_PRECONDITION \"log trimmed:\".",
                                      {"consumer"});
  webhook_entries_skipped = registry.AddCounter(
      "eventstream_producer_webhook_entries_skipped_total",
      "Entries the retention valve trimmed before webhook delivery looked at them.", {});
  AddScrapeGauges(&registry, pool, notifier);
}

void ProducerMetrics::WatchLogTail(std::function<LogTail::Stats()> stats) {
  registry.AddCallback(
      "eventstream_producer_log_tail_total",
      "The log tail: windows answered from memory (hit), pulls below it (miss), reads of the "
      "log into it (fill), entries handed over by their writer (appended).",
      metrics::Type::kCounter, {"event"},
      [stats = std::move(stats)]() -> absl::StatusOr<std::vector<Sample>> {
        const LogTail::Stats st = stats();
        return std::vector<Sample>{{{"hit"}, static_cast<double>(st.hits)},
                                   {{"miss"}, static_cast<double>(st.misses)},
                                   {{"fill"}, static_cast<double>(st.fills)},
                                   {{"appended"}, static_cast<double>(st.appended)}};
      });
}

}  // namespace eventstream
