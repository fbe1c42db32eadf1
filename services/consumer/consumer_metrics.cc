#include "services/consumer/consumer_metrics.h"

#include <algorithm>
#include <vector>

#include "libsync/base/status_macros.h"

namespace eventstream {
namespace {

using metrics::Sample;

constexpr pg::Query kWatermarks{"consumer_metrics_watermarks",
                                "SELECT producer, last_seq FROM es_consumer.last_update"};

absl::StatusOr<std::map<std::string, int64_t>> Watermarks(pg::ConnectionPool* pool) {
  ASSIGN_OR_RETURN(auto conn, pool->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kWatermarks));
  std::map<std::string, int64_t> out;
  for (int i = 0; i < r.rows(); ++i) {
    out[std::string(r.Get(i, "producer"))] = r.GetInt64(i, r.ColumnIndex("last_seq"));
  }
  return out;
}

}  // namespace

ConsumerMetrics::ConsumerMetrics(std::shared_ptr<pg::ConnectionPool> pool) {
  pulls = registry.AddCounter("eventstream_consumer_pulls_total",
                              "PullUpdates calls made to the producer.", {"producer"});
  pull_errors = registry.AddCounter("eventstream_consumer_pull_errors_total",
                                    "Pulls from the producer that failed.", {"producer"});
  trim_recoveries = registry.AddCounter(
      "eventstream_consumer_trim_recoveries_total",
      "Pulls refused \"log trimmed:\" (the producer's retention valve passed this consumer) "
      "that it recovered from by re-syncing every DocType.",
      {"producer"});
  sync_log_trimmed = registry.AddCounter(
      "eventstream_consumer_sync_log_trimmed_total",
      "Synced sync log rows deleted because they were older than consumer.sync_log_retention.");
  dependency_calls = registry.AddCounter(
      "eventstream_consumer_dependency_calls_total",
      "GetDocument and FindDocuments calls made to the producer to fetch dependencies.",
      {"producer"});
  applied = registry.AddCounter("eventstream_consumer_entries_applied_total",
                                "Entries replayed, by sync log status.",
                                {"producer", "status"});
  apply_seconds = registry.AddHistogram("eventstream_consumer_apply_batch_duration_seconds",
                                        "Time to apply one pulled batch (one transaction).",
                                        {"producer"}, metrics::LatencyBuckets());
  active = registry.AddGauge("eventstream_consumer_active",
                             "1 while this replica is the one pulling the producer.",
                             {"producer"});
  delivery = registry.AddGauge("eventstream_consumer_delivery",
                               "1 for the way entries arrive from the producer now: stream "
                               "(a StreamUpdates call is open) or pull.",
                               {"producer", "mode"});
  registry.AddCallback("eventstream_consumer_watermark",
                       "The last producer seq this site has applied (its watermark).",
                       metrics::Type::kGauge, {"producer"},
                       [pool]() -> absl::StatusOr<std::vector<Sample>> {
                         ASSIGN_OR_RETURN(auto wm, Watermarks(pool.get()));
                         std::vector<Sample> out;
                         for (const auto& [p, seq] : wm)
                           out.push_back(Sample{{p}, static_cast<double>(seq)});
                         return out;
                       });
  registry.AddCallback(
      "eventstream_consumer_lag_entries",
      "The producer's log position minus this site's watermark.", metrics::Type::kGauge,
      {"producer"}, [this, pool]() -> absl::StatusOr<std::vector<Sample>> {
        ASSIGN_OR_RETURN(auto wm, Watermarks(pool.get()));
        std::map<std::string, int64_t> positions;
        {
          absl::MutexLock lock(&mu_);
          positions = positions_;
        }
        std::vector<Sample> out;
        for (const auto& [p, position] : positions) {
          auto it = wm.find(p);
          int64_t watermark = it == wm.end() ? 0 : it->second;
          out.push_back(Sample{{p}, static_cast<double>(std::max<int64_t>(0, position - watermark))});
        }
        return out;
      });
}

void ConsumerMetrics::NotePosition(const std::string& producer, int64_t position) {
  absl::MutexLock lock(&mu_);
  int64_t& p = positions_[producer];
  p = std::max(p, position);
}

}  // namespace eventstream
