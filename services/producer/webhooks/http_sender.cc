#include "services/producer/webhooks/http_sender.h"

#include <algorithm>
#include <mutex>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "libsync/base/status_macros.h"
#include "libsync/rules/webhook_signature.h"
#include "libsync/config/webhook_template.h"

namespace eventstream {
namespace {

constexpr size_t kResponseBodyLimit = 4096;

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  size_t bytes = size * n;
  if (body->size() < kResponseBodyLimit + 8) {
    body->append(data, std::min(bytes, kResponseBodyLimit + 8 - body->size()));
  }
  return bytes;  // read (and drop) the rest, so the connection stays usable
}

// CURLOPT_HEADERFUNCTION: keeps the Retry-After value of the final
// response (a status line starts a new response, e.g. after a 100).
size_t ReadHeader(char* data, size_t size, size_t n, void* user) {
  auto* retry_after = static_cast<std::string*>(user);
  size_t bytes = size * n;
  absl::string_view line(data, bytes);
  if (absl::StartsWith(line, "HTTP/")) {
    retry_after->clear();
  } else if (size_t colon = line.find(':');
             colon != absl::string_view::npos &&
             absl::EqualsIgnoreCase(
                 absl::StripAsciiWhitespace(line.substr(0, colon)),
                 "retry-after")) {
    *retry_after =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return bytes;
}

double RandomUnit() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

// The header lines of one attempt at `timestamp`: Content-Type (unless the
// webhook sets one), the webhook's headers with secrets resolved now, when
// enable_security the two signatures over the exact `body` (the Standard
// Webhooks one also over webhook-id and `timestamp`; webhook_signature.h),
// webhook-id, webhook-timestamp. PERMISSION_DENIED (not retried) when a
// runtime webhook names a secret it may not read, decided before anything
// is read; FAILED_PRECONDITION (retried) when a secret cannot be resolved.
absl::StatusOr<std::vector<std::string>> HeaderLines(
    const WebhookConfig& hook,
    const std::vector<std::string>* runtime_secret_env,
    const std::string& request_id, int64_t timestamp,
    const std::string& body) {
  if (runtime_secret_env != nullptr) {
    if (auto problem = CheckRuntimeWebhookSecrets(hook, *runtime_secret_env)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "webhook \"", hook.name, "\": ", problem->key, ": ", problem->message));
    }
  }
  std::vector<std::string> lines;
  if (!SetsContentType(hook)) lines.push_back("Content-Type: application/json");
  for (const WebhookHeaderConfig& h : hook.headers) {
    std::string value = h.value;
    if (h.is_secret()) {
      ASSIGN_OR_RETURN(value, ResolveSecret(h.secret));
    }
    lines.push_back(absl::StrCat(h.key, ": ", value));
  }
  if (hook.enable_security) {
    ASSIGN_OR_RETURN(std::string secret, ResolveSecret(hook.secret));
    auto key = StandardWebhookKey(secret);
    if (!key.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat(hook.secret.origin, ": ", key.status().message()));
    }
    lines.push_back(absl::StrCat("X-Frappe-Webhook-Signature: ",
                                 WebhookSignature(secret, body)));
    lines.push_back(
        absl::StrCat("webhook-signature: ",
                     StandardWebhookSignature(*key, request_id, timestamp, body)));
  }
  lines.push_back(absl::StrCat("webhook-id: ", request_id));
  lines.push_back(absl::StrCat("webhook-timestamp: ", timestamp));
  return lines;
}

// curl_easy_perform's result and the answer into `outcome`.
void Classify(CURL* curl, CURLcode rc, const std::string& retry_after,
              Outcome* outcome) {
  if (rc != CURLE_OK) {
    outcome->kind = AttemptKind::kRetry;
    outcome->error = curl_easy_strerror(rc);
    return;
  }
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  outcome->code = static_cast<int>(code);
  outcome->kind = ClassifyHttpStatus(outcome->code);
  if (outcome->kind == AttemptKind::kRetry) {
    outcome->error = absl::StrCat("HTTP ", code);
    if (HonoursRetryAfter(outcome->code) && !retry_after.empty()) {
      outcome->retry_after = ParseRetryAfter(retry_after, absl::Now());
      absl::StrAppend(&outcome->error, " (Retry-After: ",
                      CleanText(retry_after, 100),
                      outcome->retry_after ? ")" : ", not understood)");
    }
  } else if (outcome->kind == AttemptKind::kFail) {
    outcome->error = absl::StrCat("HTTP ", code, " (not retried)");
  }
}

}  // namespace

void InitCurlOnce() {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

Outcome Attempt(CURL* curl, const WebhookConfig& hook,
                const std::vector<std::string>* runtime_secret_env,
                const std::string& request_id, const std::string& url,
                const std::string& method, const std::string& body) {
  Outcome outcome;
  outcome.started = absl::Now();
  auto header_lines =
      HeaderLines(hook, runtime_secret_env, request_id,
                  absl::ToUnixSeconds(outcome.started), body);
  if (!header_lines.ok()) {
    outcome.kind =
        header_lines.status().code() == absl::StatusCode::kPermissionDenied
            ? AttemptKind::kFail
            : AttemptKind::kRetry;
    outcome.error = std::string(header_lines.status().message());
    outcome.ended = absl::Now();
    return outcome;
  }
  std::vector<std::string> lines = *std::move(header_lines);
  lines.push_back("User-Agent: eventstream-webhook/1");
  lines.push_back("Expect:");  // no 100-continue round trip
  struct curl_slist* headers = nullptr;
  for (const std::string& line : lines) {
    headers = curl_slist_append(headers, line.c_str());
  }

  curl_easy_reset(curl);  // keeps the connection cache
  std::string response;
  std::string retry_after;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(hook.timeout)));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &ReadHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &retry_after);
  CURLcode rc = curl_easy_perform(curl);
  outcome.ended = absl::Now();
  outcome.duration_ms = static_cast<int>(
      absl::ToInt64Milliseconds(outcome.ended - outcome.started));
  outcome.response_body = CleanText(response, kResponseBodyLimit);
  Classify(curl, rc, retry_after, &outcome);
  curl_slist_free_all(headers);
  return outcome;
}

Settled Settle(const WebhookDeliveryConfig& options, const Outcome& outcome,
               int attempts) {
  return SettleAttempt(options, outcome.kind, attempts, outcome.retry_after,
                       RandomUnit());
}

}  // namespace eventstream
