// Webhook delivery rules: the pure decisions of services/producer/webhooks/
// (no I/O, no clock, no randomness: callers pass those in). Which doc events
// a log entry fires, the document as of an entry, a request's id, body and
// masked headers, the requests one dispatcher pass takes and how their first
// attempts are chained, how an attempt settles and when it is retried.
// docs/design.md "Webhooks" explains the why.
#ifndef EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_RULES_H_
#define EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_RULES_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "libsync/config/config.h"
#include "libsync/config/expr.h"
#include "libsync/base/value.h"
#include "libsync/config/webhook_template.h"

namespace eventstream {

// ---- doc events and the document as of an entry ----------------------------

// Frappe's doc events of a log entry (design.md table). `docstatus_before`
// (the docstatus the document had before the entry) matters only for Update.
std::vector<std::string> DocEventsFor(absl::string_view update_type,
                                      const Value& data, int docstatus_before);
// A docstatus value as an int; 0 when absent or not a number.
int DocstatusOf(const Value* v);
// The docstatus a log entry gives its document: a Create's "docstatus", an
// Update's / Cancel's changed.docstatus; nullopt when it says none (the
// docstatus the log last gave a document is that of its newest entry that
// says one).
std::optional<int> DocstatusSaidBy(absl::string_view update_type, const Value& data);
// Applies one log entry to `doc` (nullopt: not known): a Create replaces it,
// an Update/Cancel patches it with its diff (unknown when that fails), a
// Delete or Rename makes it unknown (a rename is filed under the new name).
void ReplayEntry(absl::string_view update_type, const Value& data,
                 std::optional<Value>* doc);
// {"doctype", "name"}: what a template sees of a document that is gone.
Value DocumentStub(const std::string& doctype, const std::string& docname);

// ---- one request ------------------------------------------------------------

// A request as built from a webhook and a document.
struct BuiltRequest {
  std::string url;
  std::string method;
  // In send order; secret values as "***".
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};
// A webhook's parsed templates (parsed once per webhook version).
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
// Whether the webhook sets its own Content-Type header (else
// application/json is sent).
bool SetsContentType(const WebhookConfig& hook);
// [[key, value], ...] as stored in webhook_request.headers.
Value HeadersToJson(const std::vector<std::pair<std::string, std::string>>& headers);
// "msg_" + 32 hex digits of SHA-256(webhook NUL seq): the webhook-id of the
// request for (webhook, log entry); the same whenever it is built again.
std::string WebhookRequestId(absl::string_view webhook, int64_t seq);
// Text safe for a PostgreSQL text column: valid UTF-8 (other bytes become
// '?'), no NUL, at most `limit` bytes (cut at a character boundary).
std::string CleanText(absl::string_view in, size_t limit);

// Whether a webhook's condition lets a request be made for `doc`:
// `condition_error` (the condition did not parse) or an evaluation error
// makes a Failed request with `error`; a false condition makes none.
struct ConditionVerdict {
  bool fires = true;
  std::string error;  // non-empty: fires as a Failed request
};
ConditionVerdict WebhookConditionVerdict(const std::string& webhook,
                                         const Condition* condition,
                                         const std::string& condition_error,
                                         const Value& doc,
                                         absl::string_view doctype,
                                         absl::string_view docname);

// ---- a dispatcher pass --------------------------------------------------------

// How many log entries a pass fetches: about as many as `cap` requests take
// when each fires every webhook of its DocType (at least 1, at most
// `batch_entries`). `hooks_per_doctype`: enabled webhooks per DocType.
int PassFetchLimit(int cap, const std::map<std::string, int>& hooks_per_doctype,
                   int batch_entries);
// Whether the pass takes an entry firing `firing` webhooks after `planned`
// requests: the first entry always (taken whole), later ones only when
// they fit under `cap`.
bool PassTakesEntry(size_t planned, size_t firing, int cap);
// Whether the pass is full after `planned` requests (its last entry taken).
bool PassIsFull(size_t planned, int cap);

// A pass's request as the send step sees it.
struct ChainKey {
  bool sendable = false;  // Queued and its webhook had no Queued requests
  int hook = 0;
  absl::string_view doctype, docname;
};
// The first-attempt chains of a pass: indexes of the sendable requests, one
// chain per (webhook, document) in first-seen order, each in request order.
std::vector<std::vector<size_t>> SendChains(const std::vector<ChainKey>& requests);

// ---- outcomes and retries -----------------------------------------------------

enum class AttemptKind { kSuccess, kRetry, kFail };
// An HTTP status: 2xx Success; 429 and 5xx retried; anything else Failed.
AttemptKind ClassifyHttpStatus(int code);
// Whether a Retry-After header counts with `code` (429 and 503).
bool HonoursRetryAfter(int code);

// The value of a Retry-After header (RFC 9110 10.2.3) as a delay from `now`:
// delta-seconds ("120") or an HTTP-date in any of its three forms
// (IMF-fixdate, obsolete RFC 850, asctime); a date in the past is zero.
// nullopt when empty or not one of those.
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

// A request's state after its `attempts`-th attempt ended as `kind`.
struct Settled {
  const char* status;  // Success, Failed, Exhausted, or Queued (retry)
  absl::Duration delay = absl::ZeroDuration();  // Queued: from the attempt's end
};
// Success / Failed as `kind` says; a retryable failure is Exhausted after
// max_attempts, else Queued after WebhookRetryDelay(..., `unit`).
Settled SettleAttempt(const WebhookDeliveryConfig& options, AttemptKind kind,
                      int attempts, std::optional<absl::Duration> retry_after,
                      double unit);

// The busy_cpu_percent pause after a pass that cost `cost` (CPU measure)
// and took `wall`: what makes its period cost * 100 / percent, at most a
// minute; zero or less means none. Zero when `percent` is 0.
absl::Duration BusyPause(absl::Duration cost, absl::Duration wall, int percent);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_RULES_H_
