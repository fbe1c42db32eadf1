#include "libsync/config/webhook_template.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/expr.h"

namespace eventstream {
namespace {

std::string Position(absl::string_view text, size_t offset) {
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return absl::StrCat("line ", line, ", column ", column);
}

bool IsFieldName(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return !absl::StartsWith(s, "__");
}

// The value's text: strings as is, numbers as their text, booleans
// true/false, null as "", arrays/objects as JSON.
std::string TextOf(const Value* v) {
  if (v == nullptr || v->is_null()) return "";
  if (v->is_string()) return v->as_string();
  if (v->is_number()) return v->number_text();
  if (v->is_bool()) return v->as_bool() ? "true" : "false";
  return v->ToJson();
}

// JSON string content (no quotes).
std::string EscapeJson(absl::string_view s) {
  std::string quoted = Value::String(std::string(s)).ToJson();
  return quoted.substr(1, quoted.size() - 2);
}

std::string PercentEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

bool IsHeaderName(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    // RFC 9110 token characters.
    if (!absl::ascii_isalnum(c) && absl::string_view("!#$%&'*+-.^_`|~").find(c) ==
                                     absl::string_view::npos)
      return false;
  }
  return true;
}

// An environment variable name (as config.cc's secret_env check), at most
// 128 characters so that a message may echo it.
bool IsEnvName(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  if (!absl::ascii_isalpha(s[0]) && s[0] != '_') return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

bool IsWebhookName(absl::string_view s) {
  if (s.empty() || s.size() > 140) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-' &&
        c != ' ')
      return false;
  }
  return true;
}

// The placeholder `{{ doc.a.b | tojson }}` whose "{{" is at `open` and whose
// "}}" is at `close`: the field path after doc, and whether tojson is set.
absl::Status ParsePlaceholder(absl::string_view text, size_t open, size_t close,
                              bool* tojson, std::vector<std::string>* out) {
  absl::string_view inner =
      absl::StripAsciiWhitespace(text.substr(open + 2, close - open - 2));
  std::vector<absl::string_view> parts = absl::StrSplit(inner, '|');
  if (parts.size() > 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        Position(text, open), ": only one filter (tojson) is supported"));
  }
  if (parts.size() == 2) {
    absl::string_view filter = absl::StripAsciiWhitespace(parts[1]);
    if (filter != "tojson") {
      return absl::InvalidArgumentError(
          absl::StrCat(Position(text, open), ": unknown filter \"", filter,
                       "\" (only tojson is supported)"));
    }
    *tojson = true;
  }
  absl::string_view expr = absl::StripAsciiWhitespace(parts[0]);
  std::vector<std::string> path = absl::StrSplit(expr, '.');
  if (path.size() < 2 || path[0] != "doc") {
    return absl::InvalidArgumentError(absl::StrCat(
        Position(text, open), ": expected doc.<field> in \"{{ ", inner,
        " }}\" (only document fields can be used)"));
  }
  path.erase(path.begin());
  for (const std::string& p : path) {
    if (!IsFieldName(p)) {
      return absl::InvalidArgumentError(
          absl::StrCat(Position(text, open), ": \"", p,
                       "\" is not a field name (letters, digits, _)"));
    }
  }
  *out = std::move(path);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<WebhookTemplate> WebhookTemplate::Parse(std::string_view text_sv,
                                                       Kind kind) {
  absl::string_view text(text_sv.data(), text_sv.size());
  WebhookTemplate t;
  t.kind_ = kind;
  bool in_string = false;  // kJson: inside a string literal of the text
  bool escaped = false;
  std::string literal;
  auto scan_literal = [&](char c) {
    literal.push_back(c);
    if (kind != Kind::kJson) return;
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    }
  };
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{' && i + 1 < text.size() &&
        (text[i + 1] == '%' || text[i + 1] == '#')) {
      return absl::InvalidArgumentError(absl::StrCat(
          Position(text, i), ": only {{ doc.field }} and {{ doc.field | "
                             "tojson }} are supported (no {% statements %} "
                             "or {# comments #})"));
    }
    if (!(text[i] == '{' && i + 1 < text.size() && text[i + 1] == '{')) {
      scan_literal(text[i]);
      ++i;
      continue;
    }
    size_t close = text.find("}}", i + 2);
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(Position(text, i), ": \"{{\" without \"}}\""));
    }
    Segment seg;
    seg.in_string = in_string;
    RETURN_IF_ERROR(ParsePlaceholder(text, i, close, &seg.tojson, &seg.path));
    if (!literal.empty()) {
      Segment lit;
      lit.literal = std::move(literal);
      literal.clear();
      t.segments_.push_back(std::move(lit));
    }
    t.segments_.push_back(std::move(seg));
    i = close + 2;
  }
  if (!literal.empty()) {
    Segment lit;
    lit.literal = std::move(literal);
    t.segments_.push_back(std::move(lit));
  }
  return t;
}

std::string WebhookTemplate::Render(const Value& doc) const {
  std::string out;
  for (const Segment& seg : segments_) {
    if (seg.path.empty()) {
      out += seg.literal;
      continue;
    }
    const Value* v = &doc;
    for (const std::string& p : seg.path) {
      if (v == nullptr) break;
      if (v->is_object()) {
        v = v->Find(p);
      } else if (v->is_array()) {
        size_t index = 0;
        v = absl::SimpleAtoi(p, &index) && index < v->as_array().size()
                ? &v->as_array()[index]
                : nullptr;
      } else {
        v = nullptr;
      }
    }
    switch (kind_) {
      case Kind::kJson:
        if (seg.in_string) {
          out += EscapeJson(seg.tojson ? (v ? v->ToJson() : "null")
                                       : TextOf(v));
        } else {
          out += v ? v->ToJson() : "null";
        }
        break;
      case Kind::kUrl:
        out += PercentEncode(seg.tojson ? (v ? v->ToJson() : "null")
                                        : TextOf(v));
        break;
      case Kind::kText:
        out += seg.tojson ? (v ? v->ToJson() : "null") : TextOf(v);
        break;
    }
  }
  return out;
}

absl::Status CheckJsonTemplate(std::string_view text) {
  ASSIGN_OR_RETURN(WebhookTemplate t,
                   WebhookTemplate::Parse(text, WebhookTemplate::Kind::kJson));
  std::string rendered = t.Render(Value::EmptyObject());
  auto parsed = Value::ParseJson(rendered);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "does not render to valid JSON (placeholders rendered as null/\"\"): ",
        parsed.status().message()));
  }
  return absl::OkStatus();
}

const std::vector<std::string>& WebhookDocEvents() {
  static const auto* events = new std::vector<std::string>{
      "after_insert", "on_update", "on_submit", "on_cancel",
      "on_trash",     "on_update_after_submit", "on_change"};
  return *events;
}

namespace {

// name, doctype (a top-level DocType of the registry), doc_event, condition.
std::optional<WebhookProblem> TriggerProblem(const WebhookConfig& hook,
                                             const DocTypeRegistry& registry) {
  if (!IsWebhookName(hook.name)) {
    return WebhookProblem{"name",
                          "expected a name of letters, digits, '.', '_', "
                          "'-', ' ' (at most 140)"};
  }
  if (hook.doctype.empty()) return WebhookProblem{"doctype", "required"};
  const DocTypeDef* def = registry.Find(hook.doctype);
  if (def == nullptr) {
    return WebhookProblem{
        "doctype", absl::StrCat("unknown DocType \"", hook.doctype,
                                "\" (add it under doctypes:)")};
  }
  if (def->istable) {
    return WebhookProblem{
        "doctype", absl::StrCat("\"", hook.doctype,
                                "\" is a child DocType (istable); use its "
                                "parent DocType")};
  }
  bool known_event = false;
  for (const std::string& e : WebhookDocEvents()) {
    known_event = known_event || e == hook.doc_event;
  }
  if (!known_event) {
    return WebhookProblem{
        "doc_event",
        absl::StrCat("expected one of ", absl::StrJoin(WebhookDocEvents(), ", "))};
  }
  if (!hook.condition.empty()) {
    if (absl::StartsWith(hook.condition, "cmd:")) {
      return WebhookProblem{"condition",
                            "cmd: functions are not supported for webhooks; "
                            "use an expression over doc"};
    }
    auto parsed = Condition::Parse(hook.condition);
    if (!parsed.ok()) {
      return WebhookProblem{"condition", absl::StrCat("invalid condition: ",
                                                      parsed.status().message())};
    }
  }
  return std::nullopt;
}

// request_url (a URL template rendering to http(s)://, no spaces or control
// characters) and request_method.
std::optional<WebhookProblem> RequestProblem(const WebhookConfig& hook) {
  if (hook.request_url.empty()) return WebhookProblem{"request_url", "required"};
  auto url = WebhookTemplate::Parse(hook.request_url,
                                    WebhookTemplate::Kind::kUrl);
  if (!url.ok()) {
    return WebhookProblem{"request_url", std::string(url.status().message())};
  }
  std::string probe = absl::AsciiStrToLower(url->Render(Value::EmptyObject()));
  if (!absl::StartsWith(probe, "http://") &&
      !absl::StartsWith(probe, "https://")) {
    return WebhookProblem{"request_url", "expected an http:// or https:// URL"};
  }
  for (char c : probe) {
    if (absl::ascii_isspace(c) || absl::ascii_iscntrl(c)) {
      return WebhookProblem{"request_url",
                            "must not contain spaces or control characters"};
    }
  }
  if (hook.request_method != "POST" && hook.request_method != "PUT" &&
      hook.request_method != "PATCH" && hook.request_method != "DELETE") {
    return WebhookProblem{"request_method",
                          "expected one of POST, PUT, PATCH, DELETE"};
  }
  return std::nullopt;
}

// headers[i]: a header name the sender does not set itself, and one value.
std::optional<WebhookProblem> HeaderProblem(const WebhookHeaderConfig& h,
                                            size_t i) {
  std::string at = absl::StrCat("headers[", i, "]");
  if (!IsHeaderName(h.key)) {
    return WebhookProblem{absl::StrCat(at, ".key"),
                          "expected an HTTP header name"};
  }
  for (char c : h.value) {
    if (c == '\r' || c == '\n' || c == '\0') {
      return WebhookProblem{absl::StrCat(at, ".value"),
                            "must not contain line breaks"};
    }
  }
  if (!h.value.empty() && h.is_secret()) {
    return WebhookProblem{at,
                          "set only one of value, value_env and value_file"};
  }
  if (!h.secret.env.empty() && !h.secret.file.empty()) {
    return WebhookProblem{at,
                          "set only one of value, value_env and value_file"};
  }
  std::string lower = absl::AsciiStrToLower(h.key);
  if (lower == "x-frappe-webhook-signature" || lower == "webhook-id" ||
      lower == "webhook-timestamp" || lower == "webhook-signature" ||
      lower == "content-length" || lower == "host") {
    return WebhookProblem{absl::StrCat(at, ".key"),
                          absl::StrCat("\"", h.key,
                                       "\" is set by the sender")};
  }
  return std::nullopt;
}

// request_structure with its webhook_data (Form) or webhook_json (JSON).
std::optional<WebhookProblem> BodyProblem(const WebhookConfig& hook) {
  if (hook.request_structure == "Form") {
    if (hook.webhook_data.empty()) {
      return WebhookProblem{"webhook_data",
                            "required for request_structure Form (the "
                            "fields to send)"};
    }
    if (!hook.webhook_json.empty()) {
      return WebhookProblem{"webhook_json",
                            "only used with request_structure JSON"};
    }
    for (size_t i = 0; i < hook.webhook_data.size(); ++i) {
      if (!IsFieldName(hook.webhook_data[i].fieldname)) {
        return WebhookProblem{absl::StrCat("webhook_data[", i, "].fieldname"),
                              "expected a field name"};
      }
    }
    return std::nullopt;
  }
  if (hook.request_structure == "JSON") {
    if (hook.webhook_json.empty()) {
      return WebhookProblem{"webhook_json",
                            "required for request_structure JSON"};
    }
    if (!hook.webhook_data.empty()) {
      return WebhookProblem{"webhook_data",
                            "only used with request_structure Form"};
    }
    if (absl::Status s = CheckJsonTemplate(hook.webhook_json); !s.ok()) {
      return WebhookProblem{"webhook_json", std::string(s.message())};
    }
    return std::nullopt;
  }
  return WebhookProblem{"request_structure", "expected one of Form, JSON"};
}

}  // namespace

std::optional<WebhookProblem> CheckWebhook(const WebhookConfig& hook,
                                           const DocTypeRegistry& registry) {
  if (auto problem = TriggerProblem(hook, registry)) return problem;
  if (auto problem = RequestProblem(hook)) return problem;
  for (size_t i = 0; i < hook.headers.size(); ++i) {
    if (auto problem = HeaderProblem(hook.headers[i], i)) return problem;
  }
  if (auto problem = BodyProblem(hook)) return problem;
  if (hook.timeout < absl::Milliseconds(1) || hook.timeout > absl::Minutes(5)) {
    return WebhookProblem{"timeout", "expected a duration from 1ms to 5m"};
  }
  if (hook.enable_security && !hook.secret.env.empty() &&
      !hook.secret.file.empty()) {
    return WebhookProblem{"secret_env",
                          "set only one of secret_env and secret_file"};
  }
  if (hook.enable_security && hook.secret.env.empty() &&
      hook.secret.file.empty()) {
    return WebhookProblem{"secret_env",
                          "required with enable_security (or secret_file)"};
  }
  return std::nullopt;
}

bool RuntimeSecretEnvAllowed(std::string_view name_sv,
                             const std::vector<std::string>& allowed_env) {
  absl::string_view name(name_sv.data(), name_sv.size());
  if (!IsEnvName(name)) return false;
  for (absl::string_view entry : allowed_env) {
    if (absl::ConsumeSuffix(&entry, "*")) {
      // A bare "*" is refused by the config; never let it admit everything.
      if (!entry.empty() && absl::StartsWith(name, entry)) return true;
    } else if (entry == name) {
      return true;
    }
  }
  return false;
}

namespace {

// The problem with one secret reference of a runtime webhook; `env_key` /
// `file_key` name its two keys relative to the webhook.
std::optional<WebhookProblem> RuntimeSecretProblem(
    const SecretRef& ref, const std::string& env_key,
    const std::string& file_key, const std::vector<std::string>& allowed_env) {
  if (!ref.file.empty()) {
    return WebhookProblem{
        file_key,
        "a runtime webhook cannot read files; use an environment variable "
        "listed in producer.webhook_delivery.runtime_secret_env, or define "
        "the webhook in the config (producer.webhooks)"};
  }
  if (ref.env.empty()) return std::nullopt;
  if (!IsEnvName(ref.env)) {
    return WebhookProblem{env_key,
                          "expected an environment variable name like "
                          "ES_WEBHOOK_CRM_TOKEN"};
  }
  if (!RuntimeSecretEnvAllowed(ref.env, allowed_env)) {
    return WebhookProblem{
        env_key,
        absl::StrCat("a runtime webhook may not read environment variable ",
                     ref.env,
                     ": it is not in producer.webhook_delivery."
                     "runtime_secret_env (the variables runtime webhooks may "
                     "read)")};
  }
  return std::nullopt;
}

}  // namespace

std::optional<WebhookProblem> CheckRuntimeWebhookSecrets(
    const WebhookConfig& hook, const std::vector<std::string>& allowed_env) {
  for (size_t i = 0; i < hook.headers.size(); ++i) {
    std::string at = absl::StrCat("headers[", i, "].");
    if (auto problem = RuntimeSecretProblem(
            hook.headers[i].secret, at + "value_env", at + "value_file",
            allowed_env)) {
      return problem;
    }
  }
  return RuntimeSecretProblem(hook.secret, "secret_env", "secret_file",
                              allowed_env);
}

std::string RenderFormBody(const WebhookConfig& hook, const Value& doc) {
  Value::Object body;
  for (const WebhookFieldConfig& f : hook.webhook_data) {
    const Value* v = doc.Find(f.fieldname);
    body[f.key.empty() ? f.fieldname : f.key] = v ? *v : Value::Null();
  }
  return Value::FromObject(std::move(body)).ToJson();
}

}  // namespace eventstream
