// Webhook delivery: turns Event Update Log entries into Webhook Request Log
// rows (the dispatcher) and sends them (the workers).
//
// Doc events of a log entry (Frappe's names; DocEventsFor):
//   Create  after_insert, on_update, on_submit when docstatus is 1; not
//           on_change (Frappe's insert() runs after_insert, then the
//           post-save methods: on_update [, on_submit]; run_post_save_methods
//           adds on_change only `if not doc.flags.in_insert`)
//   Update  docstatus 0 -> 1: on_submit, on_change
//           otherwise, when the document was submitted before the entry:
//             on_update_after_submit, on_change
//           otherwise: on_update, on_change
//   Cancel  on_cancel, on_change
//   Rename  on_update, on_change (decision: a rename is a change of the
//           document; the receiver sees the new name, the old one is not in
//           the document)
//   Delete  on_trash
// "Submitted before the entry" is read from the log: the docstatus set by
// the document's latest earlier Create/Update/Cancel that carries one; when
// the log has none, the current document's docstatus.
//
// The document templates and conditions see: the document as of the entry
// (DocumentVersions: its latest Create patched with the later Update/Cancel
// diffs up to and including the entry), as Frappe renders the document of
// the event; for Delete, the version before it. So a request built again
// (after a crash) has the same body. When the log does not follow the
// document (it predates capture, or was renamed), the current document
// (ReadDocument), or {"doctype", "name"} when it is gone.
//
// Dispatcher (one thread; with several replicas only the holder of a
// session advisory lock works). A pass:
//   (A) plan: one REPEATABLE READ transaction reads the webhooks and the log
//       entries past the lowest cursor in seq order and builds their
//       requests (rendered URL and body; a request that cannot be built is
//       Failed with the reason), then ends. At most max_requests_per_pass
//       (1000) requests: it stops before the first entry whose requests
//       would pass that (an entry that alone fires more is taken whole, in
//       a pass of its own; there is no cursor within an entry).
//   (B) send: the first attempt of each request, holding no transaction,
//       on up to `workers` threads, one (webhook, document) chain per
//       thread at a time in seq order. A chain stops at a retryable
//       failure; after one, that webhook's other requests of the pass are
//       not attempted (queued for the workers' backoff); nor are those of a
//       webhook that already had Queued requests (they queue behind them).
//       No first attempt starts after 2 s: a slow receiver holds up a pass
//       (and the other webhooks' records) for at most that plus one
//       attempt; what is left is queued for the workers.
//   (C) record: one transaction inserts every request of the pass with its
//       outcome (Success, Failed, Exhausted, Queued with its persisted
//       backoff, or Queued unattempted) and moves the dispatch position to
//       the last entry the pass took whole (one row: a webhook's cursor is
//       the greater of that and where the webhook started; migration 0007).
// So a healthy receiver costs one row in a batched insert per request and
// one commit per pass. Dying before (C) commits leaves no row and no cursor
// moved: the next pass builds the same requests (the same webhook-id; the
// body rendered from the document as it is then) and sends them again, i.e.
// at least once. After (C) each (webhook, entry) has its row exactly once
// (UNIQUE (webhook, seq) backs that up). Stop() during (A) abandons the
// pass; during (B) the sends in flight finish and the rest is recorded as
// Queued, so a clean shutdown sends nothing twice. Parsed definitions,
// conditions and templates are cached per webhook until its stored
// definition changes.
//
// Workers (`webhook_delivery.workers` threads, each with its own database
// connection and its own libcurl handle, which keeps connections alive
// between requests) send the Queued rows: each claims one due Queued
// request with FOR UPDATE SKIP LOCKED whose webhook has no earlier Queued
// request for the same document (per-webhook, per-document order), sends it
// holding that transaction, records the outcome and commits. A crash while
// sending rolls the claim back: the request is sent again after the restart
// (at least once; `webhook-id` lets receivers drop the duplicate).
//
// Outcomes of an attempt (both paths):
//   2xx                       Success
//   network error / timeout,  retried after WebhookRetryDelay: initial_backoff
//   429, 5xx                  * 2^(n-1) capped at max_backoff, with +-20%
//                             jitter (so webhooks failing together do not
//                             retry in lockstep), never above max_backoff;
//                             a 429 or 503 with Retry-After waits at least
//                             that long (still capped at max_backoff). The
//                             delay counts from the end of the attempt and
//                             is persisted in next_attempt_at, so no
//                             immediate retry after a timeout and none
//                             across restarts. After max_attempts: Exhausted
//   other status              Failed (not retried; RetryWebhookRequest can)
// Headers sent: Content-Type: application/json (unless the webhook sets
// one), the webhook's headers (secret values resolved now), and with
// enable_security X-Frappe-Webhook-Signature = base64(HMAC-SHA256(secret,
// exact body bytes)) and webhook-signature (Standard Webhooks: over
// webhook-id, webhook-timestamp and the body; libsync/webhook_signature.h);
// always webhook-id ("msg_" + a hash of webhook and log entry: the same on
// retries and on a re-send after a crash) and webhook-timestamp (Unix
// seconds of this attempt). A runtime webhook (one not in producer.webhooks)
// whose secrets CheckRuntimeWebhookSecrets refuses is Failed before
// anything is read or sent.
//
// None of this runs on the assembler's or the RPCs' threads or
// connections, so capture and pulls never wait for a receiver; the delivery
// threads also run at a lower CPU priority (`webhook_delivery.nice`).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOK_DELIVERY_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOK_DELIVERY_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "libsync/config.h"
#include "libsync/pg.h"
#include "libsync/value.h"
#include "libsync/webhook_signature.h"
#include "libsync/webhook_template.h"

namespace eventstream {

// See the file comment. `docstatus_before` matters only for Update.
std::vector<std::string> DocEventsFor(absl::string_view update_type,
                                      const Value& data, int docstatus_before);

// Versions of documents as of log entries, replayed from the update log
// (a document's latest Create, then its Update/Cancel diffs), remembered
// per document so that consecutive entries of one document read only the
// entries in between. Entries are immutable and seq order is commit order,
// so a remembered version stays exact. Dispatcher only (not thread-safe).
class DocumentVersions {
 public:
  // The document just before entry `seq`; nullopt when the log does not
  // follow it there (no Create of it: it predates capture; renamed;
  // deleted).
  absl::StatusOr<std::optional<Value>> Before(pg::Connection* conn,
                                              const std::string& doctype,
                                              const std::string& docname,
                                              int64_t seq);
  // `doc` is the document as of entry `seq`.
  void Remember(const std::string& doctype, const std::string& docname,
                int64_t seq, const std::optional<Value>& doc);

 private:
  static constexpr size_t kMaxDocuments = 4096;  // then forgotten at once
  struct Version {
    int64_t seq = 0;
    std::optional<Value> doc;
  };
  std::unordered_map<std::string, Version> cache_;
};

// A request as built from a webhook and a document.
struct BuiltRequest {
  std::string url;
  std::string method;
  // In send order; secret values as "***".
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};
// A webhook's parsed templates (the dispatcher parses them once per webhook
// version, not per request).
struct PreparedWebhook {
  WebhookTemplate url;
  std::optional<WebhookTemplate> json_body;  // request_structure JSON
};
// INVALID_ARGUMENT naming the webhook and template position when a template
// does not parse.
absl::StatusOr<PreparedWebhook> PrepareWebhook(const WebhookConfig& hook);
// Renders URL and body; INVALID_ARGUMENT naming the webhook and template
// position when a template does not parse or the JSON body is invalid.
absl::StatusOr<BuiltRequest> BuildRequest(const WebhookConfig& hook,
                                          const Value& doc);
// The same with `prepared` = PrepareWebhook(hook).
absl::StatusOr<BuiltRequest> BuildRequest(const WebhookConfig& hook,
                                          const PreparedWebhook& prepared,
                                          const Value& doc);

// The value of a Retry-After header (RFC 9110 10.2.3) as a delay from `now`:
// delta-seconds ("120") or an HTTP-date in any of its three forms
// (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", the obsolete RFC 850
// "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6 08:49:37 1994");
// a date in the past is zero. nullopt when empty or not one of those.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now);

// Backoff jitter: each computed delay is scaled by a factor in
// [1 - kWebhookBackoffJitter, 1 + kWebhookBackoffJitter].
inline constexpr double kWebhookBackoffJitter = 0.2;

// The delay before the next attempt after `attempts` (>= 1) failed ones:
// base = min(initial_backoff * 2^(attempts-1), max_backoff), then a value in
// [base * (1 - jitter), min(base * (1 + jitter), max_backoff)] picked by
// `unit` (in [0, 1): 0 = the lower bound); then at least `retry_after`
// when given, and never above max_backoff.
absl::Duration WebhookRetryDelay(const WebhookDeliveryConfig& options,
                                 int attempts,
                                 std::optional<absl::Duration> retry_after,
                                 double unit);

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
  // Skips the rest of the dispatcher's and workers' idle wait.
  void Wake();

  // The most requests one dispatcher pass creates (and holds in memory);
  // default kDefaultMaxRequestsPerPass. A single log entry that alone
  // fires more webhooks than this is still taken whole, in a pass of its
  // own. Set before Start() (tests set it low).
  static constexpr int kDefaultMaxRequestsPerPass = 1000;
  void set_max_requests_per_pass(int n) {
    max_requests_per_pass_ = n < 1 ? 1 : n;
  }

  // One dispatcher pass on `conn` (file comment): builds the requests of
  // the next log entries, makes their first attempts, records them; returns
  // how many it recorded. CANCELLED (nothing changed) when Stop() was called
  // while it was being planned. Exposed for tests; not concurrently with
  // Start()ed threads.
  absl::StatusOr<int> DispatchOnce(pg::Connection* conn);

 private:
  struct PassRequest;
  struct Pass;
  // DispatchOnce's three steps. PlanPass: false when there is nothing to do.
  absl::StatusOr<bool> PlanPass(pg::Connection* conn, Pass* pass)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  // Returns the senders' CPU time.
  absl::Duration SendPass(Pass* pass) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pass_mu_);
  absl::StatusOr<int> RecordPass(pg::Connection* conn, Pass* pass);
  void DispatchLoop();
  void WorkerLoop(int index);
  // Claims and sends one request; false when none was due.
  absl::StatusOr<bool> SendOne(pg::Connection* conn, void* curl);
  // Waits up to `d` or until woken/stopped; false when stopping.
  bool Sleep(absl::Duration d, bool worker);
  // The busy_cpu_percent pause: waits `d`, or until 250 ms pass without new
  // log entries (Wake()), or Stop(); false when stopping.
  bool PauseWhileWriting(absl::Duration d);
  absl::Status DeleteExpired(pg::Connection* conn);
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
  struct CachedHook;
  std::map<std::string, std::shared_ptr<const CachedHook>> hook_cache_
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
  // libcurl handles of the pass's senders (CURL*), kept between passes so
  // their connections to the receivers stay open.
  std::vector<void*> pass_curls_ ABSL_GUARDED_BY(pass_mu_);
  absl::Mutex mu_;
  absl::CondVar cv_;
  // Set with stop_; read without mu_ by a dispatcher pass in progress.
  std::atomic<bool> stopping_{false};
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t worker_wakes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t dispatch_wakes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOK_DELIVERY_H_
