// ProducerMetrics: what the producer exposes on /metrics (README
// "Operating it").
//
//  eventstream_producer_entries_captured_total{doctype,update_type}
//      Event Update Log entries this replica's assembler committed.
//  eventstream_producer_capture_errors_total{doctype}
//      Documents this replica's assembler could not turn into an entry
//      (one per document and transaction; each is a row of
//      es_producer.capture_error and a log line).
//  eventstream_producer_capture_error_records
//      Rows in es_producer.capture_error (scrape time): failures not yet
//      dealt with (an operator deletes a row once it is).
//  eventstream_producer_pulls_total{consumer}
//  eventstream_producer_entries_pulled_total{consumer}
//  eventstream_producer_pull_duration_seconds{consumer}  (histogram)
//      PullUpdates calls served by this replica, the entries they returned
//      and how long they took (failed calls count as pulls, not entries).
//  eventstream_producer_dependency_statements_total
//      Database statements run to answer GetDocument and FindDocuments
//      (update_feed.h): the work deciding what a consumer may see costs.
//  eventstream_producer_notify_failures_total{consumer}
//      Failed Notify calls to the consumer (Notifier::stats(); it starts
//      over when the consumer's address or token changes).
//  eventstream_producer_consumer_lag_entries{consumer}
//  eventstream_producer_consumer_lag_seconds{consumer}
//      Computed at scrape time from the database, so every replica reports
//      the same: the update_log entries of the consumer's approved DocTypes
//      (not of its own origin) after its acknowledged_seq, and the age of
//      the oldest of them (0 when none). acknowledged_seq is the after_seq
//      of the consumer's latest pull, so a consumer that has caught up shows
//      0 once it pulled again (it does, right after a batch).
//  eventstream_producer_log_position
//      The highest seq in the update log (scrape time).
//  eventstream_producer_webhook_backlog_entries
//  eventstream_producer_webhook_queued_requests
//      Scrape time: update_log entries after the lowest webhook cursor, and
//      webhook requests in status Queued (waiting for a retry, or behind
//      one of the same webhook and document).
// A scrape whose query fails renders those families without samples.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_
#define EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_

#include <memory>

#include "libsync/base/metrics.h"
#include "libsync/base/pg_pool.h"
#include "services/producer/notifier.h"

namespace eventstream {

struct ProducerMetrics {
  // `pool` is used at scrape time; `notifier` may be null.
  ProducerMetrics(std::shared_ptr<pg::ConnectionPool> pool,
                  std::shared_ptr<Notifier> notifier);

  metrics::Registry registry;
  metrics::Family<metrics::Counter>* captured;
  metrics::Family<metrics::Counter>* capture_errors;
  metrics::Family<metrics::Counter>* pulls;
  metrics::Family<metrics::Counter>* pulled;
  metrics::Family<metrics::Histogram>* pull_seconds;
  metrics::Family<metrics::Counter>* dependency_statements;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_
