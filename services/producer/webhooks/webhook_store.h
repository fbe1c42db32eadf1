// WebhookStore: the webhook definitions (es_producer.webhook, stored as
// WebhookToJson, secrets by name only) and the Webhook Request Log, for the
// admin RPCs and start-up. Config webhooks are synced on start and read-only
// to the RPCs (FAILED_PRECONDITION); a webhook's DocType is captured before
// the webhook is committed; deleting one Fails its Queued requests in the
// same transaction. docs/design.md "Webhooks" (Definitions).
#ifndef EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_STORE_H_
#define EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libsync/config/config.h"
#include "libsync/base/pg.h"
#include "libsync/base/pg_pool.h"
#include "libsync/base/value.h"

namespace eventstream {

Value WebhookToJson(const WebhookConfig& hook);
// INVALID_ARGUMENT when `json` is not a definition WebhookToJson wrote.
absl::StatusOr<WebhookConfig> WebhookFromJson(const Value& json);

struct WebhookRow {
  WebhookConfig hook;
  bool from_config = false;
  int64_t last_seq = 0;
};

// One row of es_producer.webhook_request.
struct WebhookRequestRow {
  int64_t id = 0;
  std::string request_id;
  std::string webhook;
  int64_t seq = 0;
  std::string doctype;
  std::string docname;
  std::string doc_event;
  std::string url;
  std::string method;
  std::vector<std::pair<std::string, std::string>> headers;  // masked
  std::string body;
  std::string status;
  int attempts = 0;
  std::string next_attempt_at;  // RFC 3339 UTC, as all times here
  int response_code = 0;
  std::string response_body;
  std::string error;
  int duration_ms = 0;
  std::string created_at;
  std::string first_attempt_at;
  std::string last_attempt_at;
  std::string finished_at;
};

struct WebhookRequestFilter {
  std::string webhook, doctype, docname, status;
  int64_t before_id = 0;
  int limit = 100;
};

class WebhookStore {
 public:
  // Installs capture for the approved DocTypes, every webhook's DocType and
  // `extra`, on `conn` (its own transaction). Called with the approvals lock
  // held.
  using EnsureCapture = std::function<absl::Status(
      pg::Connection* conn, const std::set<std::string>& extra)>;

  // `config` and `pool` must outlive the store.
  WebhookStore(const Config* config, pg::ConnectionPool* pool,
               EnsureCapture ensure_capture);

  // On start: config webhooks in, removed config webhooks out.
  absl::Status SyncConfig();

  absl::StatusOr<std::vector<WebhookRow>> List();
  absl::StatusOr<WebhookRow> Get(absl::string_view name);
  // Validates (INVALID_ARGUMENT "<key>: ...": CheckWebhook, and
  // CheckRuntimeWebhookSecrets against producer.webhook_delivery.
  // runtime_secret_env) and writes; `created` tells whether it is new.
  absl::StatusOr<WebhookRow> Upsert(const WebhookConfig& hook, bool* created);
  absl::Status Delete(absl::string_view name);

  absl::StatusOr<std::vector<WebhookRequestRow>> ListRequests(
      const WebhookRequestFilter& filter);
  absl::StatusOr<WebhookRequestRow> GetRequest(int64_t id);
  // Back to Queued, due now, attempts 0; the same request_id.
  absl::StatusOr<WebhookRequestRow> Retry(int64_t id);

  // DocTypes of all stored webhooks that are parent DocTypes of `registry`.
  static absl::StatusOr<std::set<std::string>> DocTypes(
      pg::Connection* conn, const DocTypeRegistry& registry);

 private:
  // Runs EnsureCapture for `extra` under the approvals lock held on `conn`
  // until `then` returns; `then` runs on `conn` after the triggers are in.
  absl::Status WithCapture(pg::Connection* conn,
                           const std::set<std::string>& extra,
                           const std::function<absl::Status()>& then);

  const Config* config_;
  pg::ConnectionPool* pool_;
  EnsureCapture ensure_capture_;
};

}  // namespace eventstream

#endif  // EVENTSTREAM_SERVICES_PRODUCER_WEBHOOKS_WEBHOOK_STORE_H_
