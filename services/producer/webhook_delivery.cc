#include "services/producer/webhook_delivery.h"

#include <curl/curl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "libsync/backoff.h"
#include "libsync/diff.h"
#include "libsync/expr.h"
#include "libsync/status_macros.h"
#include "libsync/webhook_template.h"
#include "services/producer/document_reader.h"
#include "services/producer/webhook_store.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr char kMasked[] = "***";
constexpr int kBatchEntries = 500;
constexpr size_t kResponseBodyLimit = 4096;
// How long a pass makes first attempts (SendPass) before it queues the rest.
constexpr absl::Duration kSendPhaseBudget = absl::Seconds(2);

absl::StatusOr<Value> ParseJsonText(absl::string_view text) {
  return Value::ParseJson(std::string_view(text.data(), text.size()));
}

int DocstatusOf(const Value* v) {
  int n = 0;
  if (v != nullptr && v->is_number() && absl::SimpleAtoi(v->number_text(), &n))
    return n;
  return 0;
}

Value Stub(const std::string& doctype, const std::string& docname) {
  Value doc = Value::EmptyObject();
  doc["doctype"] = Value::String(doctype);
  doc["name"] = Value::String(docname);
  return doc;
}

// Text safe for a PostgreSQL text column: valid UTF-8, no NUL; at most
// `limit` bytes (cut at a character boundary).
std::string CleanText(absl::string_view in, size_t limit) {
  std::string out;
  size_t i = 0;
  while (i < in.size() && out.size() < limit) {
    unsigned char c = static_cast<unsigned char>(in[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3
                                          : (c >> 3) == 30 ? 4 : 0;
    bool ok = len > 0 && i + len <= in.size() && out.size() + len <= limit;
    for (int k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(in[i + k]) >> 6) == 2;
    }
    if (ok && c != 0) {
      out.append(in.substr(i, len).data(), len);
      i += len;
    } else {
      if (out.size() + 1 > limit) break;
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

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

// Lowers the calling thread's CPU priority by `nice` (Linux: a thread's own
// nice value; raising it needs no privilege). Delivery is background work:
// when the cores are busy, the site's writers, capture and pulls go first.
void LowerThisThreadPriority(int nice) {
  if (nice <= 0) return;
  errno = 0;
  int current = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  if (errno != 0) current = 0;
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()),
                  std::min(19, current + nice)) != 0) {
    spdlog::warn("webhook delivery: could not lower thread priority: {}",
                 std::strerror(errno));
  }
}

// curl_global_init is not thread-safe: once, before any handle.
void InitCurlOnce() {
  static std::once_flag curl_init;
  std::call_once(curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// CPU time the calling thread has used.
absl::Duration ThisThreadCpu() {
  struct timespec ts = {};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

double RandomUnit() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

struct Outcome {
  enum Kind { kSuccess, kRetry, kFail } kind = kRetry;
  int code = 0;
  std::string response_body;
  std::string error;
  int duration_ms = 0;
  std::optional<absl::Duration> retry_after;  // 429/503 with Retry-After
  absl::Time started = absl::InfinitePast();  // InfinitePast: not attempted
  absl::Time ended = absl::InfinitePast();
};

// "msg_" + 32 hex digits of SHA-256(webhook NUL seq): the webhook-id of the
// request for (webhook, log entry). The same whenever that request is built
// again, so a send repeated after a crash carries the id of the first one.
std::string RequestIdFor(absl::string_view webhook, int64_t seq) {
  std::string input = absl::StrCat(webhook, absl::string_view("\0", 1), seq);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
  return absl::StrCat(
      "msg_", absl::BytesToHexString(absl::string_view(
                  reinterpret_cast<const char*>(md), std::min(len, 16u))));
}

// The header lines of one attempt at `timestamp`: Content-Type (unless the
// webhook sets one), the webhook's headers with secrets resolved now, when
// enable_security the two signatures over the exact `body` (the Standard
// Webhooks one also over webhook-id and `timestamp`; webhook_signature.h),
// webhook-id, webhook-timestamp. `runtime_secret_env` is null for a config
// webhook; for a runtime one, what it may read. PERMISSION_DENIED (not
// retried) when a runtime webhook names a secret it may not read, decided
// before anything is read; FAILED_PRECONDITION (retried) when a secret
// cannot be resolved. Messages never show a secret.
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
  bool has_content_type = false;
  for (const WebhookHeaderConfig& h : hook.headers) {
    has_content_type =
        has_content_type || absl::EqualsIgnoreCase(h.key, "content-type");
  }
  std::vector<std::string> lines;
  if (!has_content_type) lines.push_back("Content-Type: application/json");
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

// One HTTP attempt of a request with HeaderLines; the answer classified
// (file comment of webhook_delivery.h). Without header lines nothing is
// sent: Failed for a secret the webhook may not read, a retryable failure
// for one that cannot be resolved.
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
            ? Outcome::kFail
            : Outcome::kRetry;
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
  if (rc != CURLE_OK) {
    outcome.kind = Outcome::kRetry;
    outcome.error = curl_easy_strerror(rc);
  } else {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    outcome.code = static_cast<int>(code);
    if (code >= 200 && code < 300) {
      outcome.kind = Outcome::kSuccess;
    } else if (code == 429 || code >= 500) {
      outcome.kind = Outcome::kRetry;
      outcome.error = absl::StrCat("HTTP ", code);
      if ((code == 429 || code == 503) && !retry_after.empty()) {
        outcome.retry_after = ParseRetryAfter(retry_after, absl::Now());
        absl::StrAppend(&outcome.error, " (Retry-After: ",
                        CleanText(retry_after, 100),
                        outcome.retry_after ? ")" : ", not understood)");
      }
    } else {
      outcome.kind = Outcome::kFail;
      outcome.error = absl::StrCat("HTTP ", code, " (not retried)");
    }
  }
  curl_slist_free_all(headers);
  return outcome;
}

// A request's state after its `attempts`-th attempt ended with `outcome`.
struct Settled {
  const char* status;  // Success, Failed, Exhausted, or Queued (retry)
  absl::Duration delay = absl::ZeroDuration();  // Queued: from the attempt's end
};
Settled Settle(const WebhookDeliveryConfig& options, const Outcome& outcome,
               int attempts) {
  switch (outcome.kind) {
    case Outcome::kSuccess:
      return {"Success"};
    case Outcome::kFail:
      return {"Failed"};
    case Outcome::kRetry:
      break;
  }
  if (attempts >= options.max_attempts) return {"Exhausted"};
  return {"Queued", WebhookRetryDelay(options, attempts, outcome.retry_after,
                                      RandomUnit())};
}

// RFC 3339 with microseconds, for timestamptz parameters.
std::string TimestampText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6S%Ez", t, absl::UTCTimeZone());
}

}  // namespace

std::vector<std::string> DocEventsFor(absl::string_view update_type,
                                      const Value& data, int docstatus_before) {
  if (update_type == "Create") {
    // Frappe's insert(): after_insert, then run_post_save_methods():
    // on_update (and on_submit for a document inserted submitted); no
    // on_change (`if not doc.flags.in_insert: event_list.append("on_change")`).
    std::vector<std::string> events = {"after_insert", "on_update"};
    if (DocstatusOf(data.Find("docstatus")) == 1) events.push_back("on_submit");
    return events;
  }
  if (update_type == "Update") {
    const Value* changed = data.Find("changed");
    const Value* ds = changed != nullptr ? changed->Find("docstatus") : nullptr;
    if (ds != nullptr && DocstatusOf(ds) == 1) return {"on_submit", "on_change"};
    if (ds == nullptr && docstatus_before == 1) {
      return {"on_update_after_submit", "on_change"};
    }
    return {"on_update", "on_change"};
  }
  if (update_type == "Cancel") return {"on_cancel", "on_change"};
  if (update_type == "Rename") return {"on_update", "on_change"};
  if (update_type == "Delete") return {"on_trash"};
  return {};
}

namespace {
// Applies one log entry to `doc` (nullopt: not known).
void ReplayEntry(absl::string_view update_type, const Value& data,
                 std::optional<Value>* doc) {
  if (update_type == "Create") {
    if (data.is_object()) {
      *doc = data;
    } else {
      doc->reset();
    }
  } else if (update_type == "Update" || update_type == "Cancel") {
    if (!doc->has_value()) return;
    auto diff = DocDiff::FromJson(data);
    auto patched = diff.ok() ? Patch(**doc, *diff) : absl::StatusOr<Value>(diff.status());
    if (patched.ok()) {
      *doc = std::move(*patched);
    } else {
      doc->reset();  // cannot follow it: unknown from here
    }
  } else {
    // Delete: gone. Rename: the entry is filed under the new name; the
    // version under the old one is not followed (unknown here).
    doc->reset();
  }
}
}  // namespace

absl::StatusOr<std::optional<Value>> DocumentVersions::Before(
    pg::Connection* conn, const std::string& doctype,
    const std::string& docname, int64_t seq) {
  std::string key = absl::StrCat(doctype, absl::string_view("\0", 1), docname);
  std::optional<Value> doc;
  absl::StatusOr<pg::Result> r = absl::UnknownError("");
  auto it = cache_.find(key);
  if (it != cache_.end() && it->second.seq < seq) {
    doc = it->second.doc;
    r = conn->Exec(
        "SELECT update_type, data::text FROM es_producer.update_log"
        " WHERE doctype = $1 AND docname = $2 AND seq > $3 AND seq < $4"
        " ORDER BY seq",
        {doctype, docname, it->second.seq, seq});
  } else {
    // From its latest Create before `seq` (none: unknown to the log).
    r = conn->Exec(
        "SELECT update_type, data::text FROM es_producer.update_log"
        " WHERE doctype = $1 AND docname = $2 AND seq < $3"
        "  AND seq >= coalesce((SELECT max(seq) FROM es_producer.update_log"
        "    WHERE doctype = $1 AND docname = $2 AND seq < $3"
        "      AND update_type = 'Create'), $3)"
        " ORDER BY seq",
        {doctype, docname, seq});
  }
  if (!r.ok()) return r.status();
  for (int i = 0; i < r->rows(); ++i) {
    auto data = ParseJsonText(r->Get(i, 1));
    ReplayEntry(r->Get(i, 0), data.ok() ? *data : Value(), &doc);
  }
  return doc;
}

void DocumentVersions::Remember(const std::string& doctype,
                                const std::string& docname, int64_t seq,
                                const std::optional<Value>& doc) {
  if (cache_.size() >= kMaxDocuments) cache_.clear();
  cache_[absl::StrCat(doctype, absl::string_view("\0", 1), docname)] =
      Version{seq, doc};
}

absl::StatusOr<PreparedWebhook> PrepareWebhook(const WebhookConfig& hook) {
  PreparedWebhook out;
  auto url = WebhookTemplate::Parse(hook.request_url, WebhookTemplate::Kind::kUrl);
  if (!url.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "webhook \"", hook.name, "\": request_url: ", url.status().message()));
  }
  out.url = std::move(*url);
  if (hook.request_structure == "JSON") {
    auto body = WebhookTemplate::Parse(hook.webhook_json,
                                       WebhookTemplate::Kind::kJson);
    if (!body.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "webhook \"", hook.name, "\": webhook_json: ", body.status().message()));
    }
    out.json_body = std::move(*body);
  }
  return out;
}

absl::StatusOr<BuiltRequest> BuildRequest(const WebhookConfig& hook,
                                          const Value& doc) {
  auto prepared = PrepareWebhook(hook);
  if (!prepared.ok()) return prepared.status();
  return BuildRequest(hook, *prepared, doc);
}

absl::StatusOr<BuiltRequest> BuildRequest(const WebhookConfig& hook,
                                          const PreparedWebhook& prepared,
                                          const Value& doc) {
  BuiltRequest out;
  out.url = prepared.url.Render(doc);
  out.method = hook.request_method.empty() ? "POST" : hook.request_method;
  if (prepared.json_body) {
    out.body = prepared.json_body->Render(doc);
    if (auto parsed = Value::ParseJson(out.body); !parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("webhook \"", hook.name,
                       "\": webhook_json rendered invalid JSON: ",
                       parsed.status().message()));
    }
  } else {
    out.body = RenderFormBody(hook, doc);
  }
  bool has_content_type = false;
  for (const WebhookHeaderConfig& h : hook.headers) {
    has_content_type =
        has_content_type || absl::EqualsIgnoreCase(h.key, "content-type");
  }
  if (!has_content_type) out.headers.emplace_back("Content-Type", "application/json");
  for (const WebhookHeaderConfig& h : hook.headers) {
    out.headers.emplace_back(h.key, h.is_secret() ? kMasked : h.value);
  }
  if (hook.enable_security) {
    out.headers.emplace_back("X-Frappe-Webhook-Signature", kMasked);
    out.headers.emplace_back("webhook-signature", kMasked);
  }
  return out;
}

std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), absl::ascii_isdigit)) {
    int64_t seconds = 0;
    // More digits than int64 holds: "very long" (callers cap it anyway).
    if (value.size() > 12 || !absl::SimpleAtoi(value, &seconds)) {
      seconds = int64_t{999999999999};
    }
    return absl::Seconds(seconds);
  }
  // IMF-fixdate, obsolete RFC 850, asctime (RFC 9110 5.6.7); GMT only.
  static constexpr const char* kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",
      "%A, %d-%b-%y %H:%M:%S GMT",
      "%a %b %e %H:%M:%S %Y",
  };
  for (const char* format : kFormats) {
    absl::Time at;
    std::string err;
    if (absl::ParseTime(format, value, absl::UTCTimeZone(), &at, &err)) {
      return std::max(absl::ZeroDuration(), at - now);
    }
  }
  return std::nullopt;
}

absl::Duration WebhookRetryDelay(const WebhookDeliveryConfig& options,
                                 int attempts,
                                 std::optional<absl::Duration> retry_after,
                                 double unit) {
  const absl::Duration base =
      BackoffBase({options.initial_backoff, options.max_backoff, 2.0, 0.0}, attempts);
  // Its own jitter (not Jittered): the upper bound is capped at max_backoff,
  // so a delay never exceeds it.
  const absl::Duration lo = base * (1.0 - kWebhookBackoffJitter);
  const absl::Duration hi =
      std::max(lo, std::min(base * (1.0 + kWebhookBackoffJitter),
                            options.max_backoff));
  absl::Duration delay = lo + (hi - lo) * std::clamp(unit, 0.0, 1.0);
  if (retry_after) delay = std::max(delay, *retry_after);
  return std::min(delay, options.max_backoff);
}

WebhookDelivery::WebhookDelivery(const Config* config, std::string database_url)
    : config_(config),
      database_url_(std::move(database_url)),
      options_(config->producer ? config->producer->webhook_delivery
                                : WebhookDeliveryConfig()) {
  if (config->producer) {
    for (const WebhookConfig& w : config->producer->webhooks) {
      config_webhooks_.insert(w.name);
    }
  }
}

WebhookDelivery::~WebhookDelivery() {
  Stop();
  for (void* curl : pass_curls_) curl_easy_cleanup(static_cast<CURL*>(curl));
}

void WebhookDelivery::Start() {
  InitCurlOnce();
  absl::MutexLock lock(&mu_);
  if (!threads_.empty()) return;
  stop_ = false;
  stopping_ = false;
  threads_.emplace_back([this] { DispatchLoop(); });
  for (int i = 0; i < options_.workers; ++i) {
    threads_.emplace_back([this, i] { WorkerLoop(i); });
  }
}

void WebhookDelivery::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    stopping_ = true;
    threads.swap(threads_);
  }
  cv_.SignalAll();
  for (std::thread& t : threads) t.join();
}

void WebhookDelivery::Wake() {
  {
    absl::MutexLock lock(&mu_);
    ++dispatch_wakes_;
  }
  cv_.SignalAll();
}

bool WebhookDelivery::Sleep(absl::Duration d, bool worker) {
  const absl::Time deadline = absl::Now() + d;
  absl::MutexLock lock(&mu_);
  const uint64_t* counter = worker ? &worker_wakes_ : &dispatch_wakes_;
  const uint64_t seen = *counter;
  while (!stop_ && *counter == seen) {
    if (cv_.WaitWithDeadline(&mu_, deadline)) break;  // timed out
  }
  return !stop_;
}

bool WebhookDelivery::PauseWhileWriting(absl::Duration d) {
  // The assembler's Wake() after each pass that wrote entries marks the
  // writes going on; a whole slice without one means they stopped.
  constexpr absl::Duration kQuietSlice = absl::Milliseconds(250);
  const absl::Time end = absl::Now() + d;
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = absl::Now();
    if (now >= end) break;
    const uint64_t seen = dispatch_wakes_;
    mu_.AwaitWithTimeout(absl::Condition(&stop_), std::min(end - now, kQuietSlice));
    if (dispatch_wakes_ == seen) break;  // no new entries for a slice
  }
  return !stop_;
}

struct WebhookDelivery::CachedHook {
  std::string definition;  // the stored JSON text this was parsed from
  absl::StatusOr<WebhookConfig> config;
  std::optional<Condition> condition;
  std::string condition_error;
  absl::StatusOr<PreparedWebhook> prepared;
};

// One (webhook, log entry) request of a pass, built in PlanPass, attempted
// (or not) in SendPass, inserted by RecordPass.
struct WebhookDelivery::PassRequest {
  std::shared_ptr<const CachedHook> hook;
  int hook_index = 0;  // into Pass::hook_queued
  int64_t seq = 0;
  std::string doctype, docname, url, method, body, request_id;
  Value headers = Value::EmptyArray();  // [[key, value], ...], secrets masked
  // "Failed" (with `error`) when it could not be built; after SendPass the
  // settled state of its attempt, or "Queued" with no attempt.
  std::string status = "Queued";
  std::string error;
  std::optional<Outcome> outcome;  // the attempt made in this pass
  absl::Duration delay;            // Queued after an attempt: the backoff
};

struct WebhookDelivery::Pass {
  int64_t log_end = 0;   // the update log's last seq when planned
  int64_t position = 0;  // the dispatch position moves here
  std::vector<PassRequest> requests;  // in seq order
  // Per webhook of the requests (PassRequest::hook_index): it already had
  // Queued requests when the pass was planned, so its new ones are queued
  // behind them instead of sent (per-document order; a failing receiver is
  // left to the workers' backoff).
  std::vector<char> hook_queued;
};

absl::StatusOr<int> WebhookDelivery::DispatchOnce(pg::Connection* conn) {
  // A pass: (A) PlanPass reads the cursors, webhooks and log entries in one
  // REPEATABLE READ transaction and builds the requests, then ends it;
  // (B) SendPass makes each request's first attempt, holding no
  // transaction; (C) RecordPass inserts every request with its outcome and
  // moves the cursors in one transaction. A session advisory lock, held
  // from (A) to (C), keeps other replicas' dispatchers out.
  //
  // Dying before (C) commits leaves nothing: no request row, no cursor
  // moved; the next pass builds the same requests (the same webhook-id) and
  // sends those already sent again: at least once. After (C) commits, each
  // (webhook, entry) has its row exactly once (UNIQUE (webhook, seq) backs
  // that up), with the cursors past it. Stop() during (A) abandons the pass
  // (CANCELLED, nothing changed); during (B) it lets the sends in flight
  // finish and records the rest as Queued (the workers send them after the
  // restart), so a clean shutdown sends nothing twice.
  absl::MutexLock pass_lock(&pass_mu_);
  auto locked = conn->Exec(
      "SELECT pg_try_advisory_lock(hashtext('es_producer.webhook_dispatch'))");
  if (!locked.ok()) return locked.status();
  if (!locked->GetBool(0, 0)) return 0;  // another replica dispatches
  absl::Cleanup unlock = [conn] {
    if (conn->ok()) {
      (void)conn->Exec(
          "SELECT pg_advisory_unlock(hashtext('es_producer.webhook_dispatch'))");
    }
  };
  // The pass's cost, for the busy_cpu_percent pause (DispatchLoop): the
  // wall time of planning and recording (our CPU and the server's work,
  // and round trips: an overestimate) plus the senders' CPU time.
  absl::Time start = absl::Now();
  Pass pass;
  auto planned = PlanPass(conn, &pass);
  if (!planned.ok()) return planned.status();
  last_pass_.log_grew = last_pass_.log_end >= 0 && pass.log_end > last_pass_.log_end;
  last_pass_.log_end = pass.log_end;
  if (!*planned) {
    last_pass_.cost = last_pass_.wall = absl::ZeroDuration();
    return 0;
  }
  absl::Time sending = absl::Now();
  absl::Duration send_cpu = SendPass(&pass);
  absl::Time recording = absl::Now();
  auto recorded = RecordPass(conn, &pass);
  absl::Time end = absl::Now();
  last_pass_.wall = end - start;
  last_pass_.cost = (sending - start) + send_cpu + (end - recording);
  return recorded;
}

absl::StatusOr<bool> WebhookDelivery::PlanPass(pg::Connection* conn,
                                               Pass* pass) {
  // At most max_requests_per_pass_ requests (more only when its first log
  // entry alone fires more webhooks: that entry is taken whole). Log
  // entries in seq order; it stops *before* the first entry whose requests
  // would pass the cap, and `position` is the last entry it took whole.
  auto tx = pg::Transaction::Begin(conn, "ISOLATION LEVEL REPEATABLE READ");
  if (!tx.ok()) return tx.status();
  // A webhook's cursor is greatest(webhook.last_seq, the dispatch
  // position) (migrations/producer/0007). No webhooks: low = position,
  // nothing to do.
  auto bounds = conn->Exec(
      "SELECT greatest(d.position,"
      "   coalesce((SELECT min(last_seq) FROM es_producer.webhook), l.seq)),"
      " l.seq"
      " FROM es_producer.webhook_dispatch d,"
      "  (SELECT coalesce(max(seq), 0) AS seq FROM es_producer.update_log) l");
  if (!bounds.ok()) return bounds.status();
  if (bounds->rows() == 0) {
    return absl::FailedPreconditionError(
        "es_producer.webhook_dispatch has no row (migration 0007 not applied?)");
  }
  int64_t low = bounds->GetInt64(0, 0);
  int64_t position = bounds->GetInt64(0, 1);
  pass->log_end = position;
  if (low >= position) return false;

  auto hooks_result = conn->Exec(
      "SELECT w.name, w.definition::text, greatest(w.last_seq, d.position)"
      " FROM es_producer.webhook w, es_producer.webhook_dispatch d"
      " WHERE greatest(w.last_seq, d.position) < $1 ORDER BY w.name",
      {position});
  if (!hooks_result.ok()) return hooks_result.status();
  struct Hook {
    std::shared_ptr<const CachedHook> parsed;
    const WebhookConfig& config() const { return *parsed->config; }
    int64_t last_seq;
    int index = -1;  // into pass->hook_queued once it fires
  };
  std::vector<Hook> hooks;
  Value::Array doctypes;
  std::map<std::string, int> hooks_per_doctype;
  std::map<std::string, std::shared_ptr<const CachedHook>> cache;
  for (int i = 0; i < hooks_result->rows(); ++i) {
    std::string name(hooks_result->Get(i, 0));
    absl::string_view definition = hooks_result->Get(i, 1);
    std::shared_ptr<const CachedHook>& cached = cache[name];
    if (auto it = hook_cache_.find(name);
        it != hook_cache_.end() && it->second->definition == definition) {
      cached = it->second;
    } else {
      auto parsed = std::make_shared<CachedHook>();
      parsed->definition = std::string(definition);
      auto json = ParseJsonText(definition);
      parsed->config = json.ok() ? WebhookFromJson(*json)
                                 : absl::StatusOr<WebhookConfig>(json.status());
      if (parsed->config.ok()) {
        if (!parsed->config->condition.empty()) {
          auto cond = Condition::Parse(parsed->config->condition);
          if (cond.ok()) {
            parsed->condition = std::move(*cond);
          } else {
            parsed->condition_error = std::string(cond.status().message());
          }
        }
        parsed->prepared = PrepareWebhook(*parsed->config);
      } else {
        spdlog::error("webhook {}: stored definition unreadable, skipped: {}",
                      name, std::string(parsed->config.status().message()));
      }
      cached = std::move(parsed);
    }
    if (!cached->config.ok()) continue;
    Hook h{cached, hooks_result->GetInt64(i, 2)};
    if (!h.config().enabled) continue;
    if (hooks_per_doctype[h.config().doctype]++ == 0) {
      doctypes.push_back(Value::String(h.config().doctype));
    }
    hooks.push_back(std::move(h));
  }
  // Webhooks not seen in this pass drop out of the cache.
  hook_cache_ = std::move(cache);

  const int cap = max_requests_per_pass_;
  // Fetch about as many entries as the cap can take when each fires every
  // webhook of its DocType (at least one; at most kBatchEntries).
  int most_hooks = 1;
  for (const auto& [doctype, n] : hooks_per_doctype) {
    most_hooks = std::max(most_hooks, n);
  }
  const int fetch = std::clamp(cap / most_hooks + 1, 1, kBatchEntries);
  auto entries = conn->Exec(
      "SELECT seq, doctype, docname, update_type, coalesce(data::text, 'null')"
      " FROM es_producer.update_log"
      " WHERE seq > $1 AND seq <= $2"
      "  AND doctype IN (SELECT jsonb_array_elements_text($3::jsonb))"
      " ORDER BY seq LIMIT $4",
      {low, position, Value::FromArray(doctypes).ToJson(), fetch});
  if (!entries.ok()) return entries.status();
  if (entries->rows() == fetch) {
    position = entries->GetInt64(entries->rows() - 1, 0);
  }

  std::vector<PassRequest>& requests = pass->requests;
  std::vector<std::string> firing_names;  // per hook index
  const DocTypeRegistry& registry = config_->registry;
  std::vector<Hook*> firing;
  for (int i = 0; i < entries->rows(); ++i) {
    if (stopping_.load(std::memory_order_relaxed)) {
      return absl::CancelledError("webhook dispatcher stopping; pass rolled back");
    }
    int64_t seq = entries->GetInt64(i, 0);
    std::string doctype(entries->Get(i, 1));
    std::string docname(entries->Get(i, 2));
    std::string update_type(entries->Get(i, 3));
    auto data = ParseJsonText(entries->Get(i, 4));
    Value entry_data = data.ok() ? std::move(*data) : Value();
    // The document as of this entry and its docstatus before it, worked
    // out when a webhook of its DocType is looked at (file comment of
    // webhook_delivery.h).
    std::optional<Value> document;
    int docstatus_before = 0;
    bool resolved = false;
    auto resolve = [&]() -> absl::Status {
      if (resolved) return absl::OkStatus();
      resolved = true;
      // A Create is the whole document: what came before it does not
      // matter (no read).
      auto prior = update_type == "Create"
                       ? absl::StatusOr<std::optional<Value>>(std::nullopt)
                       : versions_.Before(conn, doctype, docname, seq);
      if (!prior.ok()) return prior.status();
      std::optional<Value> now = *prior;
      ReplayEntry(update_type, entry_data, &now);
      versions_.Remember(doctype, docname, seq, now);
      if (prior->has_value()) {
        docstatus_before = DocstatusOf((*prior)->Find("docstatus"));
      }
      if (now) {
        document = std::move(now);
        return absl::OkStatus();
      }
      if (update_type == "Delete") {
        document = prior->has_value() ? std::move(**prior) : Stub(doctype, docname);
        return absl::OkStatus();
      }
      // Not followed by the log (it predates capture, or was renamed): the
      // current document, and the docstatus the log last gave it.
      const DocTypeDef* def = registry.Find(doctype);
      std::optional<Value> current;
      if (def != nullptr) {
        auto read = ReadDocument(conn, registry, *def, docname);
        if (!read.ok()) return read.status();
        current = std::move(*read);
      }
      if (!prior->has_value()) {
        auto last = conn->Exec(
            "SELECT CASE WHEN update_type = 'Create' THEN data->>'docstatus'"
            "  ELSE data->'changed'->>'docstatus' END"
            " FROM es_producer.update_log"
            " WHERE doctype = $1 AND docname = $2 AND seq < $3"
            "  AND (update_type = 'Create' OR (update_type IN ('Update', 'Cancel')"
            "       AND data->'changed' ? 'docstatus'))"
            " ORDER BY seq DESC LIMIT 1",
            {doctype, docname, seq});
        if (!last.ok()) return last.status();
        if (last->rows() > 0) {
          (void)absl::SimpleAtoi(last->Get(0, 0), &docstatus_before);
        } else if (current) {
          docstatus_before = DocstatusOf(current->Find("docstatus"));
        }
      }
      document = current ? std::move(*current) : Stub(doctype, docname);
      return absl::OkStatus();
    };
    // The webhooks this entry fires (before conditions): an upper bound on
    // the requests it creates.
    firing.clear();
    std::optional<std::vector<std::string>> events;
    for (Hook& hook : hooks) {
      if (hook.last_seq >= seq || hook.config().doctype != doctype) continue;
      if (!events) {
        if (absl::Status st = resolve(); !st.ok()) return st;
        events = DocEventsFor(update_type, entry_data, docstatus_before);
      }
      if (std::find(events->begin(), events->end(), hook.config().doc_event) !=
          events->end()) {
        firing.push_back(&hook);
      }
    }
    if (!requests.empty() &&
        requests.size() + firing.size() > static_cast<size_t>(cap)) {
      // Not this entry: the cursors stop at the previous one.
      position = entries->GetInt64(i - 1, 0);
      break;
    }
    for (Hook* hook : firing) {
      const WebhookConfig& config = hook->config();
      const CachedHook& parsed = *hook->parsed;
      const Value& d = *document;
      std::string error;
      if (!parsed.condition_error.empty()) {
        error = absl::StrCat("webhook \"", config.name,
                             "\": condition: ", parsed.condition_error);
      } else if (parsed.condition) {
        auto met = parsed.condition->Evaluate(d);
        if (!met.ok()) {
          error = absl::StrCat("webhook \"", config.name,
                               "\": condition failed for ", doctype, " \"",
                               docname, "\": ", met.status().message());
        } else if (!*met) {
          continue;
        }
      }
      PassRequest request;
      request.hook = hook->parsed;
      if (hook->index < 0) {
        hook->index = static_cast<int>(firing_names.size());
        firing_names.push_back(config.name);
      }
      request.hook_index = hook->index;
      request.seq = seq;
      request.doctype = doctype;
      request.docname = docname;
      request.method = config.request_method;
      request.request_id = RequestIdFor(config.name, seq);
      if (error.empty()) {
        auto built = parsed.prepared.ok()
                         ? BuildRequest(config, *parsed.prepared, d)
                         : absl::StatusOr<BuiltRequest>(parsed.prepared.status());
        if (built.ok()) {
          request.url = std::move(built->url);
          request.method = std::move(built->method);
          request.body = std::move(built->body);
          Value::Array headers;
          for (const auto& [k, v] : built->headers) {
            headers.push_back(Value::FromArray({Value::String(k), Value::String(v)}));
          }
          request.headers = Value::FromArray(std::move(headers));
        } else {
          error = std::string(built.status().message());
        }
      }
      if (!error.empty()) {
        spdlog::warn("webhook {}: request for {} {} (seq {}) not sent: {}",
                     config.name, doctype, docname, seq, error);
        request.status = "Failed";
        request.error = std::move(error);
      }
      requests.push_back(std::move(request));
    }
    if (requests.size() >= static_cast<size_t>(cap)) {
      position = seq;  // full: this entry is the last one of the pass
      break;
    }
  }
  pass->position = position;
  // The firing webhooks that already have Queued requests (one probe of
  // webhook_request_doc each).
  pass->hook_queued.assign(firing_names.size(), 0);
  if (!firing_names.empty()) {
    auto queued = conn->Exec(
        "SELECT h.i::int FROM unnest($1::text[]) WITH ORDINALITY AS h(name, i)"
        " WHERE EXISTS (SELECT 1 FROM es_producer.webhook_request r"
        "   WHERE r.status = 'Queued' AND r.webhook = h.name)",
        {pg::TextArray(firing_names)});
    if (!queued.ok()) return queued.status();
    for (int i = 0; i < queued->rows(); ++i) {
      pass->hook_queued[queued->GetInt64(i, 0) - 1] = 1;
    }
  }
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  return true;
}

absl::Duration WebhookDelivery::SendPass(Pass* pass) {
  // Chains: the requests of one (webhook, document), in seq order; a chain
  // is sent in order by one thread, and stops at a retryable failure (the
  // rest stays Queued behind it). After one retryable failure of a webhook
  // (or when it had Queued requests already) its other requests are not
  // attempted here either: they are queued, and the workers' backoff paces
  // a failing receiver.
  std::vector<PassRequest>& requests = pass->requests;
  std::vector<std::vector<size_t>> chains;
  {
    std::map<std::tuple<int, absl::string_view, absl::string_view>, size_t> chain_of;
    for (size_t i = 0; i < requests.size(); ++i) {
      const PassRequest& r = requests[i];
      if (r.status != "Queued" || pass->hook_queued[r.hook_index]) continue;
      auto [it, added] = chain_of.try_emplace(
          std::make_tuple(r.hook_index, absl::string_view(r.doctype),
                          absl::string_view(r.docname)),
          chains.size());
      if (added) chains.emplace_back();
      chains[it->second].push_back(i);
    }
  }
  if (chains.empty()) return absl::ZeroDuration();
  std::unique_ptr<std::atomic<bool>[]> failing(
      new std::atomic<bool>[pass->hook_queued.size()]);
  for (size_t i = 0; i < pass->hook_queued.size(); ++i) failing[i] = false;
  std::atomic<size_t> next_chain{0};
  // A slow receiver must not hold up the whole pass (and every other
  // webhook's record): after kSendPhaseBudget, no new first attempts; the
  // rest is queued for the workers.
  const absl::Time deadline = absl::Now() + kSendPhaseBudget;
  auto send_chains = [&](CURL* curl) {
    for (size_t c; (c = next_chain.fetch_add(1)) < chains.size();) {
      for (size_t i : chains[c]) {
        PassRequest& r = requests[i];
        if (stopping_.load(std::memory_order_relaxed) ||
            failing[r.hook_index].load(std::memory_order_relaxed) ||
            absl::Now() > deadline) {
          break;  // this and the rest of the chain: Queued, not attempted
        }
        r.outcome = Attempt(curl, *r.hook->config,
                            RuntimeSecretEnv(*r.hook->config), r.request_id,
                            r.url, r.method, r.body);
        Settled settled = Settle(options_, *r.outcome, 1);
        r.status = settled.status;
        r.delay = settled.delay;
        r.error = r.outcome->error;
        if (r.outcome->kind == Outcome::kRetry) {
          failing[r.hook_index] = true;
          if (r.status == "Queued") break;  // the rest waits behind it
        }
      }
    }
  };
  const size_t threads =
      std::min(chains.size(), static_cast<size_t>(options_.workers));
  InitCurlOnce();
  while (pass_curls_.size() < threads) pass_curls_.push_back(curl_easy_init());
  if (threads == 1) {
    absl::Duration before = ThisThreadCpu();
    send_chains(static_cast<CURL*>(pass_curls_[0]));
    return ThisThreadCpu() - before;
  }
  std::vector<std::thread> senders;
  std::vector<absl::Duration> cpu(threads);
  for (size_t t = 0; t < threads; ++t) {
    senders.emplace_back([&, t, curl = static_cast<CURL*>(pass_curls_[t])] {
      LowerThisThreadPriority(options_.nice);
      send_chains(curl);
      cpu[t] = ThisThreadCpu();
    });
  }
  absl::Duration total;
  for (size_t t = 0; t < threads; ++t) {
    senders[t].join();
    total += cpu[t];
  }
  return total;
}

absl::StatusOr<int> WebhookDelivery::RecordPass(pg::Connection* conn,
                                                Pass* pass) {
  // The rows in COPY's text format (the server parses far less than a JSON
  // or array parameter of the same rows).
  static constexpr char kColumns[] =
      "(request_id, webhook, seq, doctype, docname, doc_event, url, method,"
      " headers, body, status, error, attempts, next_attempt_at, response_code,"
      " response_body, duration_ms, first_attempt_at, last_attempt_at,"
      " finished_at)";
  const std::string now = TimestampText(absl::Now());
  pg::CopyText rows;
  for (const PassRequest& r : pass->requests) {
    const std::string& webhook = r.hook->config->name;
    rows.Field(r.request_id).Field(webhook).Field(r.seq).Field(r.doctype);
    rows.Field(r.docname).Field(r.hook->config->doc_event).Field(r.url);
    rows.Field(r.method).Field(r.headers.ToJson()).Field(r.body);
    rows.Field(r.status);
    if (r.error.empty()) {
      rows.Null();
    } else {
      rows.Field(CleanText(r.error, 2000));
    }
    const bool queued = r.status == "Queued";
    if (r.outcome) {
      const Outcome& o = *r.outcome;
      const std::string ended = TimestampText(o.ended);
      rows.Field(int64_t{1});
      rows.Field(queued ? TimestampText(o.ended + r.delay) : ended);
      if (o.code != 0) {
        rows.Field(int64_t{o.code});
      } else {
        rows.Null();
      }
      rows.Field(o.response_body).Field(int64_t{o.duration_ms});
      rows.Field(TimestampText(o.started)).Field(ended);
      if (queued) {
        rows.Null();
      } else {
        rows.Field(ended);
      }
    } else {
      // Not attempted: Queued and due now, or Failed when it could not be
      // built.
      rows.Field(int64_t{0}).Field(now).Null().Null().Null().Null().Null();
      if (queued) {
        rows.Null();
      } else {
        rows.Field(now);
      }
    }
    rows.EndRow();
  }
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  if (!pass->requests.empty()) {
    auto copied = conn->CopyIn(
        absl::StrCat("COPY es_producer.webhook_request ", kColumns, " FROM STDIN"),
        rows.data());
    if (!copied.ok() && copied.status().code() == absl::StatusCode::kAlreadyExists) {
      // A request of this pass is recorded already (UNIQUE (webhook, seq)):
      // only if two dispatchers overlapped. Record the others.
      spdlog::warn("webhook dispatcher: {}; recording the pass's other requests",
                   std::string(copied.status().message()));
      tx->reset();  // rolled back
      tx = pg::Transaction::Begin(conn);
      if (!tx.ok()) return tx.status();
      auto staged = conn->Exec(
          "CREATE TEMP TABLE IF NOT EXISTS webhook_request_pass"
          " (LIKE es_producer.webhook_request INCLUDING DEFAULTS)"
          " ON COMMIT DELETE ROWS");
      if (!staged.ok()) return staged.status();
      copied = conn->CopyIn(
          absl::StrCat("COPY webhook_request_pass ", kColumns, " FROM STDIN"),
          rows.data());
      if (!copied.ok()) return copied.status();
      std::string columns(absl::StripSuffix(absl::StripPrefix(kColumns, "("), ")"));
      auto inserted = conn->Exec(absl::StrCat(
          "INSERT INTO es_producer.webhook_request ", kColumns, " SELECT ",
          columns, " FROM webhook_request_pass ON CONFLICT (webhook, seq) DO NOTHING"));
      if (!inserted.ok()) return inserted.status();
    }
    if (!copied.ok()) return copied.status();
  }
  // Every webhook (also disabled or unreadable ones, which create nothing)
  // has looked at every entry up to `position`.
  auto advanced = conn->Exec(
      "UPDATE es_producer.webhook_dispatch SET position = $1"
      " WHERE position < $1",
      {pass->position});
  if (!advanced.ok()) return advanced.status();
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  for (const PassRequest& r : pass->requests) {
    if (!r.outcome || r.status == "Success") continue;
    std::string error = CleanText(r.error, 300);
    if (r.status == "Queued") {
      spdlog::warn("webhook {}: request {} for {} {} (seq {}) attempt 1 failed: "
                   "{}; retry in {}",
                   r.hook->config->name, r.request_id, r.doctype, r.docname,
                   r.seq, error, absl::FormatDuration(r.delay));
    } else {
      spdlog::error("webhook {}: request {} for {} {} (seq {}) {} after 1 "
                    "attempt: {}",
                    r.hook->config->name, r.request_id, r.doctype, r.docname,
                    r.seq, r.status, error);
    }
  }
  return static_cast<int>(pass->requests.size());
}

absl::Status WebhookDelivery::DeleteExpired(pg::Connection* conn) {
  // In batches of kRetentionBatch through the created_at index (a finished
  // request's finished_at is never before its created_at, so every expired
  // one was created before the cutoff): each statement is short, and none
  // scans the whole request log. A long statement here would also hold
  // back the horizon up to which PostgreSQL may clean dead rows, which the
  // capture tables (es_producer.raw_change) depend on. Dying midway loses
  // nothing: the next run deletes the rest.
  constexpr int kRetentionBatch = 5000;
  const std::string retention_s =
      std::to_string(absl::ToDoubleSeconds(options_.retention));
  int64_t deleted = 0;
  while (!stopping_.load(std::memory_order_relaxed)) {
    auto r = conn->Exec(
        "DELETE FROM es_producer.webhook_request WHERE id IN ("
        " SELECT id FROM es_producer.webhook_request"
        "  WHERE created_at < now() - make_interval(secs => $1::double precision)"
        "   AND status <> 'Queued' AND coalesce(finished_at, created_at) <"
        "    now() - make_interval(secs => $1::double precision)"
        "  ORDER BY created_at LIMIT $2)",
        {retention_s, kRetentionBatch});
    if (!r.ok()) return r.status();
    deleted += r->affected_rows();
    if (r->affected_rows() < kRetentionBatch) break;
  }
  if (deleted > 0) {
    spdlog::info("webhook request log: {} finished requests past retention "
                 "deleted", deleted);
  }
  return absl::OkStatus();
}

void WebhookDelivery::DispatchLoop() {
  LowerThisThreadPriority(options_.nice);
  std::unique_ptr<pg::Connection> conn;
  bool failing = false;
  absl::Time next_cleanup = absl::Now();
  absl::Duration paused;  // by busy_cpu_percent since the last report
  int paused_passes = 0;
  absl::Time next_pause_report = absl::Now();
  while (true) {
    absl::Status status;
    int queued = 0;
    if (conn == nullptr || !conn->ok()) {
      auto opened = pg::Connection::Open(database_url_);
      if (opened.ok()) {
        conn = std::move(*opened);
        (void)conn->SetApplicationName("eventstream-producer webhooks");
      } else {
        conn.reset();
        status = opened.status();
      }
    }
    if (conn != nullptr) {
      auto n = DispatchOnce(conn.get());
      if (n.ok()) {
        queued = *n;
        if (absl::Now() >= next_cleanup) {
          status = DeleteExpired(conn.get());
          // Once a minute (sooner for a retention below two minutes).
          next_cleanup = absl::Now() + std::clamp(options_.retention / 2,
                                                  absl::Seconds(1), absl::Minutes(1));
        }
      } else {
        if (stopping_) return;  // the pass was abandoned (rolled back)
        status = n.status();
        conn.reset();
      }
    }
    if (!status.ok()) {
      if (!failing) {
        spdlog::error("webhook dispatcher: {} (retrying)",
                      std::string(status.message()));
      }
      failing = true;
      if (!Sleep(absl::Seconds(1), false)) return;
      continue;
    }
    if (failing) spdlog::info("webhook dispatcher: recovered");
    failing = false;
    if (queued > 0) {
      {
        absl::MutexLock lock(&mu_);
        ++worker_wakes_;
      }
      cv_.SignalAll();
      if (stopping_) return;
      // While the site writes, hold the passes' cost to busy_cpu_percent of
      // one core: a pass that cost c is followed by a pause that makes its
      // period c * 100 / busy_cpu_percent (at most a minute). The pause
      // ends early when no new entries arrived for 250 ms (the writes
      // stopped), and on Stop().
      if (options_.busy_cpu_percent > 0 && last_pass_.log_grew) {
        absl::Duration pause = std::min(
            last_pass_.cost * 100 / options_.busy_cpu_percent - last_pass_.wall,
            absl::Minutes(1));
        if (pause > absl::ZeroDuration()) {
          paused += pause;
          ++paused_passes;
          if (absl::Now() >= next_pause_report) {
            spdlog::info(
                "webhook dispatcher: the site is writing; first sends held to "
                "{}% of a core (busy_cpu_percent): {} passes paused {} in all "
                "since the last report",
                options_.busy_cpu_percent, paused_passes,
                absl::FormatDuration(absl::Trunc(paused, absl::Milliseconds(1))));
            paused = absl::ZeroDuration();
            paused_passes = 0;
            next_pause_report = absl::Now() + absl::Minutes(1);
          }
          if (!PauseWhileWriting(pause)) return;
        }
      }
      continue;  // there may be more
    }
    if (!Sleep(options_.poll_interval, false)) return;
  }
}

void WebhookDelivery::WorkerLoop(int index) {
  LowerThisThreadPriority(options_.nice);
  CURL* curl = curl_easy_init();
  std::unique_ptr<pg::Connection> conn;
  bool failing = false;
  while (true) {
    absl::Status status;
    bool sent = false;
    if (conn == nullptr || !conn->ok()) {
      auto opened = pg::Connection::Open(database_url_);
      if (opened.ok()) {
        conn = std::move(*opened);
        (void)conn->SetApplicationName("eventstream-producer webhooks");
      } else {
        conn.reset();
        status = opened.status();
      }
    }
    if (conn != nullptr) {
      auto result = SendOne(conn.get(), curl);
      if (result.ok()) {
        sent = *result;
      } else {
        status = result.status();
        conn.reset();
      }
    }
    if (!status.ok()) {
      if (!failing) {
        spdlog::error("webhook worker {}: {} (retrying)", index,
                      std::string(status.message()));
      }
      failing = true;
      if (!Sleep(absl::Seconds(1), true)) break;
      continue;
    }
    failing = false;
    if (sent) {
      absl::MutexLock lock(&mu_);
      if (stop_) break;
      continue;
    }
    if (!Sleep(options_.poll_interval, true)) break;
  }
  curl_easy_cleanup(curl);
}

const std::vector<std::string>* WebhookDelivery::RuntimeSecretEnv(
    const WebhookConfig& hook) const {
  // Start-up (WebhookStore::SyncConfig) stores exactly the config's
  // webhooks as from_config, under their names, and the RPCs cannot write
  // those names: a webhook named in the config is that config webhook.
  if (config_webhooks_.count(hook.name) > 0) return nullptr;
  return &options_.runtime_secret_env;
}

absl::StatusOr<bool> WebhookDelivery::SendOne(pg::Connection* conn, void* handle) {
  CURL* curl = static_cast<CURL*>(handle);
  // The claim (row lock) is held for the whole attempt; the outcome is
  // written in the same transaction. Dying before COMMIT leaves the request
  // Queued with its previous attempt count: it is sent again (at least
  // once).
  auto tx = pg::Transaction::Begin(conn);
  if (!tx.ok()) return tx.status();
  auto claimed = conn->Exec(
      "SELECT r.id, r.request_id, r.webhook, r.url, r.method, r.body,"
      "  r.attempts, w.definition::text, r.doctype, r.docname"
      " FROM es_producer.webhook_request r"
      " LEFT JOIN es_producer.webhook w ON w.name = r.webhook"
      " WHERE r.status = 'Queued' AND r.next_attempt_at <= now()"
      "  AND NOT EXISTS (SELECT 1 FROM es_producer.webhook_request e"
      "    WHERE e.status = 'Queued' AND e.webhook = r.webhook"
      "      AND e.doctype = r.doctype AND e.docname = r.docname AND e.id < r.id)"
      " ORDER BY r.next_attempt_at, r.id LIMIT 1"
      " FOR UPDATE OF r SKIP LOCKED");
  if (!claimed.ok()) return claimed.status();
  if (claimed->rows() == 0) return false;
  int64_t id = claimed->GetInt64(0, 0);
  std::string request_id(claimed->Get(0, 1));
  std::string webhook(claimed->Get(0, 2));
  std::string url(claimed->Get(0, 3));
  std::string method(claimed->Get(0, 4));
  std::string body(claimed->Get(0, 5));
  int attempts = static_cast<int>(claimed->GetInt64(0, 6)) + 1;
  std::string docref = absl::StrCat(claimed->Get(0, 8), " ", claimed->Get(0, 9));

  Outcome outcome;
  if (claimed->IsNull(0, 7)) {
    outcome.kind = Outcome::kFail;
    outcome.error = "webhook deleted";
  } else {
    auto json = ParseJsonText(claimed->Get(0, 7));
    auto hook = json.ok() ? WebhookFromJson(*json)
                          : absl::StatusOr<WebhookConfig>(json.status());
    if (hook.ok()) {
      outcome = Attempt(curl, *hook, RuntimeSecretEnv(*hook), request_id, url,
                        method, body);
    } else {
      outcome.kind = Outcome::kFail;
      outcome.error = absl::StrCat("stored webhook definition unreadable: ",
                                   hook.status().message());
    }
  }
  Settled settled = Settle(options_, outcome, attempts);
  const std::string status = settled.status;
  const double delay_s = absl::ToDoubleSeconds(settled.delay);
  auto updated = conn->Exec(
      "UPDATE es_producer.webhook_request SET attempts = attempts + 1,"
      " status = $2,"
      // From the end of this attempt (clock_timestamp, not the claim's
      // now()): a slow or timed-out attempt still waits the whole delay.
      " next_attempt_at = CASE WHEN $2 = 'Queued'"
      "   THEN clock_timestamp() + make_interval(secs => $3::double precision)"
      "   ELSE next_attempt_at END,"
      " response_code = nullif($4::int, 0), response_body = $5,"
      " error = nullif($6, ''), duration_ms = $7::int,"
      " first_attempt_at = coalesce(first_attempt_at, now()),"
      " last_attempt_at = clock_timestamp(),"
      " finished_at = CASE WHEN $2 = 'Queued' THEN NULL ELSE clock_timestamp() END"
      " WHERE id = $1",
      {id, status, std::to_string(delay_s), outcome.code,
       outcome.response_body, CleanText(outcome.error, 2000),
       outcome.duration_ms});
  if (!updated.ok()) return updated.status();
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  if (status == "Queued") {
    spdlog::warn("webhook {}: request {} for {} attempt {} failed: {}; retry in {}",
                 webhook, id, docref, attempts, CleanText(outcome.error, 300),
                 absl::FormatDuration(settled.delay));
  } else if (status != "Success") {
    spdlog::error("webhook {}: request {} for {} {} after {} attempt(s): {}",
                  webhook, id, docref, status, attempts,
                  CleanText(outcome.error, 300));
  }
  return true;
}

}  // namespace eventstream
