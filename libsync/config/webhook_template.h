// Webhook templates and webhook definition checks.
//
// A template is text with placeholders, and nothing else (no statements, no
// code execution): `{{ doc.field }}`, `{{ doc.field.sub }}` (object key or
// array index), and `{{ doc.field | tojson }}`. Spaces inside the braces
// are optional. `{%` and `{#` (Jinja statements and comments) are errors,
// as is any other expression or filter. Errors are INVALID_ARGUMENT
// "line L, column C: ..." (1-based, pointing at the placeholder).
//
// How a value is rendered depends on the template's kind:
//  * kJson (webhook_json): the literal text is scanned as JSON to know
//    whether a placeholder sits inside a string literal.
//      - inside a string ("{{ doc.title }}"): the value's text, escaped as
//        JSON string content (strings as is, numbers as their exact text,
//        true/false, null and missing as "", arrays/objects as their JSON);
//        so a title containing a quote still yields valid JSON (Frappe's
//        Jinja would break the document here).
//      - outside a string ({{ doc.qty }}), with or without tojson: the
//        value as JSON (null when missing).
//    Hence a template whose structure is valid JSON renders to valid JSON
//    for every document; CheckJsonTemplate proves the structure by
//    rendering an empty document.
//  * kUrl (request_url): the value's text, percent-encoded except RFC 3986
//    unreserved characters (a docname with '/' or ' ' stays one segment).
//  * kText: the value's text as is.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_WEBHOOK_TEMPLATE_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_WEBHOOK_TEMPLATE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libsync/config/config.h"
#include "libsync/model/doctype.h"
#include "libsync/base/value.h"

namespace eventstream {

class WebhookTemplate {
 public:
  enum class Kind { kJson, kUrl, kText };

  static absl::StatusOr<WebhookTemplate> Parse(std::string_view text,
                                               Kind kind);
  // Never fails: a missing field renders as described above.
  std::string Render(const Value& doc) const;

 private:
  struct Segment {
    std::string literal;              // when path is empty
    std::vector<std::string> path;    // after "doc."
    bool tojson = false;
    bool in_string = false;           // kJson: inside a JSON string literal
  };
  Kind kind_ = Kind::kText;
  std::vector<Segment> segments_;
};

// Parses `text` as a kJson template and checks that it renders to valid
// JSON (rendering an empty document). Errors name the line and column.
absl::Status CheckJsonTemplate(std::string_view text);

// The doc events a webhook may listen to, in Frappe's spelling.
const std::vector<std::string>& WebhookDocEvents();

// What is wrong with a webhook definition, relative to the webhook: `key`
// is e.g. "request_url" or "headers[1].key".
struct WebhookProblem {
  std::string key;
  std::string message;
};
// Checks everything but secrets' availability (they are resolved when
// sending): name, DocType (a non-child DocType of `registry`), doc_event,
// condition (an expression; cmd: is not supported for webhooks), URL
// (http/https after rendering an empty document), method, headers,
// structure with its data or template (which must render to valid JSON),
// timeout (1ms..5m), and that enable_security comes with a secret.
std::optional<WebhookProblem> CheckWebhook(const WebhookConfig& hook,
                                           const DocTypeRegistry& registry);

// Where a webhook may read its secrets (header value_env / value_file,
// secret_env / secret_file) from. A webhook in the config (producer.webhooks)
// is the operator's: any environment variable or file. A runtime webhook
// (the Webhooks RPCs) is an admin's, and an admin must not be able to send
// the producer's own secrets to a URL of their choice, nor probe the file
// system: it may read only the environment variables `allowed_env` admits
// (producer.webhook_delivery.runtime_secret_env: exact names, or prefixes
// written NAME_*), and no file at all. Nothing is read to decide this, so
// the answer is the same whether a variable or file exists or not.
// Returns the first reference that breaks this (key as for CheckWebhook,
// e.g. "headers[0].value_env"); the message names no path.
std::optional<WebhookProblem> CheckRuntimeWebhookSecrets(
    const WebhookConfig& hook, const std::vector<std::string>& allowed_env);
// Whether `allowed_env` (entries as above) admits variable `name`.
bool RuntimeSecretEnvAllowed(std::string_view name,
                             const std::vector<std::string>& allowed_env);

// The Form body: {key: doc[fieldname]} as compact JSON (keys sorted).
std::string RenderFormBody(const WebhookConfig& hook, const Value& doc);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_WEBHOOK_TEMPLATE_H_
