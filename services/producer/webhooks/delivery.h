// WebhookDelivery: turns Event Update Log entries into Webhook Request Log
// rows and sends them, on its own threads and connections (never the
// assembler's or the RPCs'): one dispatcher (dispatcher.cc: plan, first
// attempts, record, one pass at a time) and `webhook_delivery.workers`
// retry workers (workers.cc: Queued rows, per webhook and document in
// order). At least once; crash reasoning and outcomes: docs/design.md
// "Webhooks".
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_DELIVERY_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_DELIVERY_H_

#include <curl/curl.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libsync/base/backoff.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/rules/webhook_rules.h"
#include "services/producer/webhooks/events.h"

namespace eventstream {
namespace webhook_dispatch {  // dispatcher.cc
struct CachedHook;
struct PassHook;
struct PassRequest;
struct Pass;
struct PauseReport;
}  // namespace webhook_dispatch

class WebhookDelivery {
 public:
  WebhookDelivery(const Config* config, std::string database_url);
  ~WebhookDelivery();  // Stop()
  WebhookDelivery(const WebhookDelivery&) = delete;
  WebhookDelivery& operator=(const WebhookDelivery&) = delete;

  void Start();
  // Returns after the sends in flight finished (each bounded by its
  // webhook's timeout); idempotent.
  void Stop();
  // Skips the rest of the dispatcher's idle wait, or its next one when it
  // is not waiting (working, or between waits): a wake is never lost.
  void Wake();
  // The same for every retry worker (the dispatcher calls it after a pass
  // that queued requests).
  void WakeWorkers();
  // The sleeper the dispatcher (worker < 0) or retry worker `worker` waits
  // on (exposed for tests). Stop() stops them all.
  Sleeper& sleeper(int worker);

  // The most requests one dispatcher pass creates (and holds in memory);
  // default kDefaultMaxRequestsPerPass. A single log entry that alone
  // fires more webhooks than this is still taken whole, in a pass of its
  // own. Set before Start() (tests set it low).
  static constexpr int kDefaultMaxRequestsPerPass = 1000;
  void set_max_requests_per_pass(int n) {
    max_requests_per_pass_ = n < 1 ? 1 : n;
  }

  // One dispatcher pass on `conn`: builds the requests of the next log
  // entries, makes their first attempts, records them; returns how many it
  // recorded. CANCELLED (nothing changed) when Stop() was called while it
  // was being planned. Exposed for tests; not concurrently with Start()ed
  // threads.
  absl::StatusOr<int> DispatchOnce(pg::Connection* conn);

 private:
  // dispatcher.cc. DispatchOnce's three steps (plan, send, record; the
  // last a free function there). PlanPass: false when there is nothing to
  // do.
  absl::StatusOr<bool> PlanPass(pg::Connection* conn, webhook_dispatch::Pass* pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  // The enabled webhooks whose cursor is before `log_end`, parsed once per
  // stored definition (hook_cache_).
  absl::StatusOr<std::vector<webhook_dispatch::PassHook>> LoadPassHooks(
      pg::Connection* conn, int64_t log_end) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  // The requests of `entries` (seq order) up to the pass's cap; lowers
  // pass->position to the last entry taken whole.
  absl::Status PlanEntries(pg::Connection* conn,
                           std::vector<webhook_dispatch::PassHook>* hooks,
                           const std::vector<WebhookLogEntry>& entries,
                           webhook_dispatch::Pass* pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  // Returns the senders' CPU time.
  absl::Duration SendPass(webhook_dispatch::Pass* pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  // One sender's share of SendPass: chains taken from `next` in turn.
  void SendFirstAttempts(CURL* curl, webhook_dispatch::Pass* pass,
                         const std::vector<std::vector<size_t>>& chains,
                         std::atomic<size_t>* next, std::atomic<bool>* failing,
                         absl::Time deadline);
  // The dispatcher's thread: DispatchStep on RunLoop, a failure retried
  // every kRetryEvery (logged once per streak).
  void DispatchLoop();
  // Reconnects, runs a pass and the cleanup when due; after a pass that
  // queued requests, wakes the workers and makes the busy_cpu_percent pause.
  // The wait before the next step (PollWait).
  absl::StatusOr<absl::Duration> DispatchStep(std::unique_ptr<pg::Connection>* conn,
                                              Sleeper& clock, absl::Time* next_cleanup,
                                              webhook_dispatch::PauseReport* report);
  // DeleteExpired when `*next_cleanup` has come (by `clock`); then sets the
  // next one.
  absl::Status CleanupIfDue(pg::Connection* conn, Sleeper& clock, absl::Time* next_cleanup);
  absl::Duration CleanupInterval() const;
  // The busy_cpu_percent pause after a pass that queued requests; false
  // when stopping.
  bool PauseAfterPass(webhook_dispatch::PauseReport* report);
  absl::Status DeleteExpired(pg::Connection* conn);

  // workers.cc. A worker's thread: SendOne on RunLoop, at once after a
  // send, the poll interval when none was due, a failure retried every
  // kRetryEvery (logged once per streak).
  void WorkerLoop(int index);
  // Claims and sends one request; false when none was due.
  absl::StatusOr<bool> SendOne(pg::Connection* conn, CURL* curl);

  // delivery.cc
  // Opens `*conn` when it is closed or broken (named for pg_stat_activity).
  absl::Status Reconnect(std::unique_ptr<pg::Connection>* conn) const;
  // A failed dispatcher or worker step is tried again after this.
  static constexpr absl::Duration kRetryEvery = absl::Seconds(1);
  // The busy_cpu_percent pause: waits `d` (by the dispatcher's sleeper's
  // clock), or until 250 ms pass without new log entries (Wake()), or
  // Stop(); false when stopping.
  bool PauseWhileWriting(absl::Duration d);
  // Null for a webhook of producer.webhooks (the operator's: any variable or
  // file); for a runtime one, options_.runtime_secret_env (what Attempt
  // lets it read).
  const std::vector<std::string>* RuntimeSecretEnv(
      const WebhookConfig& hook) const;

  const Config* config_;
  const std::string database_url_;
  const WebhookDeliveryConfig options_;
  std::set<std::string> config_webhooks_;  // names in producer.webhooks
  int max_requests_per_pass_ = kDefaultMaxRequestsPerPass;
  // Parsed webhooks by name, reused while the stored definition text is
  // unchanged (dispatcher only).
  std::map<std::string, std::shared_ptr<const webhook_dispatch::CachedHook>> hook_cache_
      ABSL_GUARDED_BY(pass_mu_);
  DocumentVersions versions_;  // dispatcher only
  // The last pass (dispatcher only), for the busy_cpu_percent pause.
  struct LastPass {
    int64_t log_end = -1;   // the log's last seq when it was planned
    bool log_grew = false;  // ... past the previous pass's
    absl::Duration cost;    // DispatchOnce's cost measure
    absl::Duration wall;
  } last_pass_;
  absl::Mutex pass_mu_;  // one DispatchOnce at a time (hook_cache_, pass_curls_)
  // libcurl handles of the pass's senders, kept between passes so their
  // connections to the receivers stay open.
  std::vector<CURL*> pass_curls_ ABSL_GUARDED_BY(pass_mu_);
  // What the loops wait on (RunLoop): Wake() and WakeWorkers() end their
  // current wait or, when they are not waiting, their next one. Made in the
  // constructor and never replaced; each is thread-safe.
  InterruptibleSleeper dispatch_sleeper_;
  std::vector<std::unique_ptr<InterruptibleSleeper>> worker_sleepers_;
  absl::Mutex mu_;
  // Set with stop_; read without mu_ by a dispatcher pass in progress.
  std::atomic<bool> stopping_{false};
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Wake() calls, which the busy_cpu_percent pause watches.
  uint64_t dispatch_wakes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

// Lowers the calling thread's CPU priority by `nice` (delivery is
// background work: the site's writers, capture and pulls go first).
void LowerThisThreadPriority(int nice);
// CPU time the calling thread has used.
absl::Duration ThisThreadCpu();

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_DELIVERY_H_
