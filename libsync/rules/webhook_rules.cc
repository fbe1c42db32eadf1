#include "libsync/rules/webhook_rules.h"

#include <openssl/evp.h>

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "libsync/base/backoff.h"
#include "libsync/model/diff.h"

namespace eventstream {
namespace {
constexpr char kMasked[] = "***";
}  // namespace

// ---- doc events and the document as of an entry ----------------------------

int DocstatusOf(const Value* v) {
  int n = 0;
  if (v != nullptr && v->is_number() && absl::SimpleAtoi(v->number_text(), &n))
    return n;
  return 0;
}

std::optional<int> DocstatusSaidBy(absl::string_view update_type, const Value& data) {
  if (update_type == "Create") return DocstatusOf(data.Find("docstatus"));
  if (update_type != "Update" && update_type != "Cancel") return std::nullopt;
  const Value* changed = data.Find("changed");
  const Value* ds = changed != nullptr ? changed->Find("docstatus") : nullptr;
  if (ds == nullptr) return std::nullopt;
  return DocstatusOf(ds);
}

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
    const std::optional<int> ds = DocstatusSaidBy(update_type, data);
    if (ds == 1) return {"on_submit", "on_change"};
    if (!ds && docstatus_before == 1) {
      return {"on_update_after_submit", "on_change"};
    }
    return {"on_update", "on_change"};
  }
  if (update_type == "Cancel") return {"on_cancel", "on_change"};
  // Decision: a rename is a change of the document; the receiver sees the
  // new name.
  if (update_type == "Rename") return {"on_update", "on_change"};
  if (update_type == "Delete") return {"on_trash"};
  return {};
}

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

Value DocumentStub(const std::string& doctype, const std::string& docname) {
  Value doc = Value::EmptyObject();
  doc["doctype"] = Value::String(doctype);
  doc["name"] = Value::String(docname);
  return doc;
}

// ---- one request ------------------------------------------------------------

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
  if (!SetsContentType(hook)) out.headers.emplace_back("Content-Type", "application/json");
  for (const WebhookHeaderConfig& h : hook.headers) {
    out.headers.emplace_back(h.key, h.is_secret() ? kMasked : h.value);
  }
  if (hook.enable_security) {
    out.headers.emplace_back("X-Frappe-Webhook-Signature", kMasked);
    out.headers.emplace_back("webhook-signature", kMasked);
  }
  return out;
}

bool SetsContentType(const WebhookConfig& hook) {
  for (const WebhookHeaderConfig& h : hook.headers) {
    if (absl::EqualsIgnoreCase(h.key, "content-type")) return true;
  }
  return false;
}

Value HeadersToJson(const std::vector<std::pair<std::string, std::string>>& headers) {
  Value::Array out;
  for (const auto& [k, v] : headers) {
    out.push_back(Value::FromArray({Value::String(k), Value::String(v)}));
  }
  return Value::FromArray(std::move(out));
}

std::string WebhookRequestId(absl::string_view webhook, int64_t seq) {
  std::string input = absl::StrCat(webhook, absl::string_view("\0", 1), seq);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(input.data(), input.size(), md, &len, EVP_sha256(), nullptr);
  return absl::StrCat(
      "msg_", absl::BytesToHexString(absl::string_view(
                  reinterpret_cast<const char*>(md), std::min(len, 16u))));
}

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

ConditionVerdict WebhookConditionVerdict(const std::string& webhook,
                                         const Condition* condition,
                                         const std::string& condition_error,
                                         const Value& doc,
                                         absl::string_view doctype,
                                         absl::string_view docname) {
  ConditionVerdict verdict;
  if (!condition_error.empty()) {
    verdict.error =
        absl::StrCat("webhook \"", webhook, "\": condition: ", condition_error);
  } else if (condition != nullptr) {
    auto met = condition->Evaluate(doc);
    if (!met.ok()) {
      verdict.error = absl::StrCat("webhook \"", webhook,
                                   "\": condition failed for ", doctype, " \"",
                                   docname, "\": ", met.status().message());
    } else {
      verdict.fires = *met;
    }
  }
  return verdict;
}

// ---- a dispatcher pass --------------------------------------------------------

int PassFetchLimit(int cap, const std::map<std::string, int>& hooks_per_doctype,
                   int batch_entries) {
  int most_hooks = 1;
  for (const auto& [doctype, n] : hooks_per_doctype) {
    most_hooks = std::max(most_hooks, n);
  }
  return std::clamp(cap / most_hooks + 1, 1, batch_entries);
}

bool PassTakesEntry(size_t planned, size_t firing, int cap) {
  return planned == 0 || planned + firing <= static_cast<size_t>(cap);
}

bool PassIsFull(size_t planned, int cap) {
  return planned >= static_cast<size_t>(cap);
}

std::vector<std::vector<size_t>> SendChains(const std::vector<ChainKey>& requests) {
  std::vector<std::vector<size_t>> chains;
  std::map<std::tuple<int, absl::string_view, absl::string_view>, size_t> chain_of;
  for (size_t i = 0; i < requests.size(); ++i) {
    const ChainKey& r = requests[i];
    if (!r.sendable) continue;
    auto [it, added] = chain_of.try_emplace(
        std::make_tuple(r.hook, r.doctype, r.docname), chains.size());
    if (added) chains.emplace_back();
    chains[it->second].push_back(i);
  }
  return chains;
}

// ---- outcomes and retries -----------------------------------------------------

AttemptKind ClassifyHttpStatus(int code) {
  if (code >= 200 && code < 300) return AttemptKind::kSuccess;
  if (code == 429 || code >= 500) return AttemptKind::kRetry;
  return AttemptKind::kFail;
}

bool HonoursRetryAfter(int code) { return code == 429 || code == 503; }

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

Settled SettleAttempt(const WebhookDeliveryConfig& options, AttemptKind kind,
                      int attempts, std::optional<absl::Duration> retry_after,
                      double unit) {
  switch (kind) {
    case AttemptKind::kSuccess:
      return {"Success"};
    case AttemptKind::kFail:
      return {"Failed"};
    case AttemptKind::kRetry:
      break;
  }
  if (attempts >= options.max_attempts) return {"Exhausted"};
  return {"Queued", WebhookRetryDelay(options, attempts, retry_after, unit)};
}

absl::Duration BusyPause(absl::Duration cost, absl::Duration wall, int percent) {
  if (percent <= 0) return absl::ZeroDuration();
  return std::min(cost * 100 / percent - wall, absl::Minutes(1));
}

}  // namespace eventstream
