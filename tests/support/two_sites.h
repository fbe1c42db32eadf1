// TwoSites: the end-to-end setting -- the real eventstream-producer on an
// `hq` database and the real eventstream-consumer on a `branch` database
// (a FreshDatabase each, on the shared test cluster), with the configs
// written from a Spec, and direct SQL connections to both databases.
//
// Entries arrive by stream (delivery: stream, the default; ES_TEST_DELIVERY=
// pull runs the same tests with pulls; ES_TEST_APPLY_WORKERS=N gives the
// consumer apply_workers: N); the consumer also advertises its
// address, so hq's Notify drives the pull path; `poll_interval` is the
// fallback. Both ports are fixed at construction, so
// a restarted consumer (after Stop or Kill) is found at the address hq
// already knows.
//
// This file has no gRPC in it (tests/support is built without the generated
// protocol); tests add their own stubs on producer_address() /
// consumer_address() with the tokens below.
#ifndef EVENTSTREAM_TESTS_SUPPORT_TWO_SITES_H_
#define EVENTSTREAM_TESTS_SUPPORT_TWO_SITES_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libsync/base/pg.h"
#include "tests/support/eventually.h"
#include "tests/support/service_runner.h"

namespace eventstream::testing {

class TwoSites {
 public:
  struct Spec {
    // The `doctypes:` registry, as YAML list items ("  - name: Note\n ...").
    std::string hq_doctypes;
    std::string branch_doctypes;  // "" = the same as hq_doctypes
    // SQL run on each database before anything starts (tables, functions).
    std::string hq_sql;
    std::string branch_sql;       // "" = the same as hq_sql
    // consumer.producers[0].doctypes items, e.g.
    //   "        - {doctype: Note, use_same_name: true}\n"
    std::string subscriptions;
    // consumer.mappings items ("    - name: ...\n"); "" = none.
    std::string mappings;
    // producer.consumers[0].doctypes items for site branch (config
    // pre-approvals), e.g. "        - {doctype: Note, status: approved}\n";
    // "" = none (approve with SetSubscriptionStatus).
    std::string pre_approvals;
    // producer.condition_functions: what branch's cmd: conditions may call.
    std::vector<std::string> condition_functions;
    std::string poll_interval = "2s";
    // consumer.advertise: false = no Notify (the consumer gets entries only
    // by stream or by polling).
    bool advertise = true;
    // consumer.producers[0].delivery: "stream" or "pull"; "" = the
    // environment's ES_TEST_DELIVERY (pull or stream), else the default
    // (stream).
    std::string delivery;
    // consumer.producers[0].apply_workers (1-8); 0 = the environment's
    // ES_TEST_APPLY_WORKERS, else the default (1).
    int apply_workers = 0;
    std::string consumer_log_level = "info";
    // Serve the consumer's /metrics on consumer_metrics_port()
    // (tests/support/http_get.h scrapes it).
    bool consumer_metrics = false;
    // More keys of the producer: / consumer: sections, as YAML lines
    // indented by 2 ("  max_message_mb: 8\n").
    std::string producer_extra;
    std::string consumer_extra;
    // TLS (libsync/config/config.h): YAML flow mappings such as
    // "{cert_file: /x/tls.crt, key_file: /x/tls.key}" put under producer.tls,
    // producer.notify_tls, consumer.tls and the consumer's entry for hq in
    // consumer.producers; "" = none (plaintext). With TLS on a server, the
    // tests' own clients need credentials for it.
    std::string producer_tls;
    std::string producer_notify_tls;
    std::string consumer_tls;
    std::string consumer_producer_tls;
  };

  // A Spec that syncs Note under its own name, pre-approved at hq, with
  // `doctypes` and `sql` on both sites.
  static Spec NoteSpec(std::string doctypes, std::string sql);

  // Secrets both services read (pass to StartService), and the
  // `authorization` values for hq's admin and branch's admin.
  static const std::map<std::string, std::string>& Secrets();
  static constexpr char kHqAdmin[] = "token ops:e2e-hq-ops";
  static constexpr char kBranchAdmin[] = "token ops:e2e-branch-ops";

  // Creates both databases and runs the Spec's SQL; ports are chosen.
  static absl::StatusOr<std::unique_ptr<TwoSites>> Create(Spec spec);

  absl::Status StartProducer();
  absl::Status StartConsumer();
  // `eventstream-consumer migrate`: branch's schemas, without starting it.
  absl::Status MigrateConsumer();
  // SIGTERM, waits for a clean exit; returns the log written.
  absl::StatusOr<std::string> StopConsumer();
  // SIGKILL, reaps it.
  void KillConsumer();
  void KillProducer();
  bool ConsumerRunning();

  int consumer_metrics_port() const { return consumer_metrics_port_; }
  // The running services' process ids (0 when not running), e.g. to read
  // /proc/<pid>/status.
  pid_t producer_pid() const;
  pid_t consumer_pid() const;
  std::string producer_address() const;
  std::string consumer_address() const;
  std::string ProducerLog() const;
  std::string ConsumerLog() const;
  // Both logs and State(), for failure messages.
  std::string Logs() const;
  // Both sites' bookkeeping as text: hq's last log entries, positions,
  // holdings; branch's watermark and last sync log rows.
  std::string State() const;

  pg::Connection* hq() { return hq_.get(); }
  pg::Connection* branch() { return branch_.get(); }
  const std::string& hq_db() const { return hq_db_; }
  const std::string& branch_db() const { return branch_db_; }

  std::string ProducerConfig() const;
  std::string ConsumerConfig() const;
  // Changes take effect at the next StartProducer / StartConsumer.
  Spec* mutable_spec() { return &spec_; }

 private:
  TwoSites() = default;
  Spec spec_;
  std::string hq_db_, branch_db_;
  std::unique_ptr<pg::Connection> hq_, branch_;
  int producer_port_ = 0, consumer_port_ = 0, consumer_metrics_port_ = 0;
  RunningService producer_, consumer_;
};

// The first column of the first row of `sql` as text ("<error: ...>" when
// the query fails, "<no rows>" when it returns none).
std::string QueryText(pg::Connection* conn, const std::string& sql);
// ... as a number (-1 on error or no rows).
int64_t QueryInt(pg::Connection* conn, const std::string& sql);
// A replication slot name for database `db` (slots are the cluster's:
// [a-z0-9_], 1-63), for producers with capture: wal.
std::string SlotNameFor(const std::string& db);

// A TCP port on 127.0.0.1 that nothing listens on right now.
int FreeTcpPort();


}  // namespace eventstream::testing

#endif  // EVENTSTREAM_TESTS_SUPPORT_TWO_SITES_H_
