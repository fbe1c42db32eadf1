// ConsumerMetrics: what the consumer exposes on /metrics (README
// "Operating it"). Per producer (label `producer`, its config name):
//
//  eventstream_consumer_pulls_total          PullUpdates calls made
//  eventstream_consumer_pull_errors_total    pulls that failed (producer
//                                            unreachable or refusing, local
//                                            database errors)
//  eventstream_consumer_trim_recoveries_total  pulls refused "log trimmed:"
//                                            (the producer's retention valve
//                                            passed this consumer) that it
//                                            recovered from by re-syncing
//  eventstream_consumer_dependency_calls_total  GetDocument / FindDocuments
//                                            calls (dependencies, Document
//                                            mappings)
//  eventstream_consumer_entries_applied_total{status=synced|failed|parked}
//  eventstream_consumer_apply_batch_duration_seconds  (histogram) one
//                                            ApplyBatch transaction
//  eventstream_consumer_active               1 while this replica holds the
//                                            producer's pull lock (puller.h)
//  eventstream_consumer_delivery{mode=stream|pull}  1 for the way entries
//                                            arrive now: stream while a
//                                            StreamUpdates call is open, else
//                                            pull (catching up, between
//                                            streams, delivery: pull)
//  eventstream_consumer_watermark            es_consumer.last_update (scrape
//                                            time, from the database)
//  eventstream_consumer_lag_entries          the producer's log position
//                                            (learnt from its Notify calls
//                                            and from pulls) minus the
//                                            watermark, never below 0;
//                                            absent until a position is known
// And for the site:
//  eventstream_consumer_sync_log_trimmed_total  Synced sync log rows deleted
//                                            past consumer.sync_log_retention
// Counters count what this replica did; the database-backed gauges are the
// same on every replica.
#ifndef EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_METRICS_H_
#define EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_METRICS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "libsync/base/metrics.h"
#include "libsync/base/pg_pool.h"

namespace eventstream {

class ConsumerMetrics {
 public:
  // `pool` is used at scrape time.
  explicit ConsumerMetrics(std::shared_ptr<pg::ConnectionPool> pool);

  // Records the producer's log position (keeps the highest seen).
  void NotePosition(const std::string& producer, int64_t position);

  metrics::Registry registry;
  metrics::Family<metrics::Counter>* pulls;
  metrics::Family<metrics::Counter>* pull_errors;
  metrics::Family<metrics::Counter>* trim_recoveries;
  metrics::Family<metrics::Counter>* dependency_calls;
  metrics::Family<metrics::Counter>* applied;
  metrics::Family<metrics::Histogram>* apply_seconds;
  metrics::Family<metrics::Gauge>* active;
  metrics::Family<metrics::Gauge>* delivery;
  metrics::Family<metrics::Counter>* sync_log_trimmed;

 private:
  absl::Mutex mu_;
  std::map<std::string, int64_t> positions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_CONSUMER_CONSUMER_METRICS_H_
