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
//      PullUpdates calls served by this replica, and the pulls its
//      StreamUpdates calls made, the entries they returned and how long they
//      took (failed calls count as pulls, not entries).
//  eventstream_producer_open_streams
//      StreamUpdates calls open on this replica (docs/design.md "Delivery");
//      their answers count in the three families above.
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
//  eventstream_producer_log_tail_total{event}
//      The log tail (log_tail.h) since start: `hit` windows answered from
//      memory, `miss` pulls below it (read from the database), `fill` reads
//      of the log into it, `appended` entries handed over by their writer.
//  eventstream_producer_webhook_backlog_entries
//  eventstream_producer_webhook_queued_requests
//      Scrape time: update_log entries after the lowest webhook cursor, and
//      webhook requests in status Queued (waiting for a retry, or behind
//      one of the same webhook and document).
//  Retention (retention.h; docs/design.md "Retention"):
//  eventstream_producer_log_trimmed_entries_total
//      Update log entries this replica's retention loop deleted.
//  eventstream_producer_consumers_cut_off_total{consumer}
//      Times the valve (max_age / max_entries) trimmed entries the consumer
//      still needed.
//  eventstream_producer_log_trimmed_pulls_total{consumer}
//      Pulls answered FAILED_PRECONDITION "log trimmed:".
//  eventstream_producer_webhook_entries_skipped_total
//      Entries the valve trimmed before webhook delivery looked at them.
//  eventstream_producer_log_trimmed_through
//      The recorded trim point (es_producer.log_state; scrape time).
//  eventstream_producer_log_oldest_entry_seconds
//      Age of the oldest entry kept (0 when the log is empty; scrape time).
//  eventstream_producer_consumer_held_back_entries{consumer}
//      The log's end minus the consumer's acknowledged_seq: how much of the
//      log it holds back (scrape time).
//  eventstream_producer_table_rows{table}
//  eventstream_producer_table_bytes{table}
//      The producer's tables (update_log, raw_change, holding,
//      holding_change, sync_job, webhook_request): rows as PostgreSQL
//      estimates them (pg_class.reltuples, as of the last ANALYZE or
//      VACUUM; -1 before the first) and bytes with indexes and TOAST
//      (pg_total_relation_size). Catalog reads: cheap at scrape time.
//  eventstream_producer_wal_retained_bytes{slot}
//      capture: wal: the WAL each pgoutput slot of this database keeps
//      (pg_current_wal_lsn() - restart_lsn; scrape time).
// A scrape whose query fails renders those families without samples.
#ifndef EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_
#define EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_

#include <functional>
#include <memory>

#include "libsync/base/metrics.h"
#include "libsync/base/pg_pool.h"
#include "services/producer/log_tail.h"
#include "services/producer/notifier.h"

namespace eventstream {

struct ProducerMetrics {
  // `pool` is used at scrape time; `notifier` may be null.
  ProducerMetrics(std::shared_ptr<pg::ConnectionPool> pool,
                  std::shared_ptr<Notifier> notifier);

  // Exposes the log tail's stats, read at scrape time from `stats`.
  void WatchLogTail(std::function<LogTail::Stats()> stats);

  metrics::Registry registry;
  metrics::Family<metrics::Counter>* captured;
  metrics::Family<metrics::Counter>* capture_errors;
  metrics::Family<metrics::Counter>* pulls;
  metrics::Family<metrics::Counter>* pulled;
  metrics::Family<metrics::Histogram>* pull_seconds;
  metrics::Family<metrics::Gauge>* open_streams;
  metrics::Family<metrics::Counter>* dependency_statements;
  metrics::Family<metrics::Counter>* trimmed_entries;
  metrics::Family<metrics::Counter>* consumers_cut_off;
  metrics::Family<metrics::Counter>* trimmed_pulls;
  metrics::Family<metrics::Counter>* webhook_entries_skipped;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_PRODUCER_METRICS_H_
