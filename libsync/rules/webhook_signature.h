// Webhook request signatures: pure functions (HMAC-SHA256 from OpenSSL).
//
// A webhook with enable_security has one secret S: the text its
// secret_env / secret_file holds. Each request carries two signatures
// made with it:
//
//  * X-Frappe-Webhook-Signature = base64(HMAC-SHA256(S, body)), exactly as
//    Frappe sends it (the key is S's bytes). It covers the body only, so on
//    its own it does not stop a replay.
//  * webhook-signature = "v1," + base64(HMAC-SHA256(K, id "." ts "." body))
//    (Standard Webhooks, https://www.standardwebhooks.com/), where id and
//    ts are the webhook-id and webhook-timestamp headers sent with it. A
//    receiver that checks it (and the timestamp against its clock, as the
//    standard's libraries do with a 5 minute tolerance) refuses a request
//    replayed with another id or timestamp (the signature no longer
//    matches) or replayed as it was (its timestamp is too old).
//
// K, the Standard Webhooks key (StandardWebhookKey): when S is written the
// standard's way, "whsec_" + base64 of random bytes, the decoded bytes;
// otherwise S's own bytes, the key Frappe's signature uses. Either way a
// receiver gives its verifier the configured text S unchanged:
//   new Webhook(S)                  (npm standardwebhooks) for whsec_ S;
//   new Webhook(S, {format: "raw"}) for any other (ASCII) S; for non-ASCII
//   new Webhook(Buffer.from(S, "utf8"), {format: "raw"}).
#ifndef EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_SIGNATURE_H_
#define EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_SIGNATURE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace eventstream {

// base64(HMAC-SHA256(secret, body)): X-Frappe-Webhook-Signature.
std::string WebhookSignature(absl::string_view secret, absl::string_view body);

// The prefix of a Standard Webhooks secret ("whsec_" + base64).
inline constexpr absl::string_view kStandardWebhooksSecretPrefix = "whsec_";

// K of the file comment. INVALID_ARGUMENT when `secret` starts with whsec_
// but the rest is not base64 of at least one byte (the message never shows
// the secret).
absl::StatusOr<std::string> StandardWebhookKey(absl::string_view secret);

// The webhook-signature header value: "v1," + base64(HMAC-SHA256(key,
// id "." timestamp "." body)), `timestamp` in Unix seconds as sent in
// webhook-timestamp; `key` = StandardWebhookKey(secret).
std::string StandardWebhookSignature(absl::string_view key,
                                     absl::string_view id, int64_t timestamp,
                                     absl::string_view body);

}  // namespace eventstream

#endif  // EVENTSTREAM_LIBSYNC_RULES_WEBHOOK_SIGNATURE_H_
