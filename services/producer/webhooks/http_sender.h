// One HTTP attempt of a webhook request (libcurl): the header lines (the
// webhook's headers with secrets resolved now, the signatures, webhook-id
// and webhook-timestamp), the send, and the answer classified. Sends only;
// the caller records the outcome. docs/design.md "Webhooks".
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_HTTP_SENDER_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_HTTP_SENDER_H_

#include <curl/curl.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "libsync/config/config.h"
#include "libsync/rules/webhook_rules.h"

namespace eventstream {

// curl_global_init is not thread-safe: call once before any handle.
void InitCurlOnce();

struct Outcome {
  AttemptKind kind = AttemptKind::kRetry;
  int code = 0;
  std::string response_body;  // CleanText, at most kResponseBodyLimit
  std::string error;
  int duration_ms = 0;
  std::optional<absl::Duration> retry_after;  // 429/503 with Retry-After
  absl::Time started = absl::InfinitePast();  // InfinitePast: not attempted
  absl::Time ended = absl::InfinitePast();
};

// One attempt with `curl` (reset first; its connection cache is kept).
// `runtime_secret_env` is null for a config webhook; for a runtime one,
// what it may read. Without header lines nothing is sent: Failed for a
// secret the webhook may not read (decided before anything is read), a
// retryable failure for one that cannot be resolved. Messages never show a
// secret.
Outcome Attempt(CURL* curl, const WebhookConfig& hook,
                const std::vector<std::string>* runtime_secret_env,
                const std::string& request_id, const std::string& url,
                const std::string& method, const std::string& body);

// SettleAttempt for `outcome`, its jitter drawn at random.
Settled Settle(const WebhookDeliveryConfig& options, const Outcome& outcome,
               int attempts);

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_HTTP_SENDER_H_
