#include "services/producer/webhooks/webhook_store.h"

#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libsync/base/status_macros.h"
#include "libsync/config/webhook_template.h"
#include "services/producer/approvals_lock.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

// A timestamptz column as RFC 3339 UTC text ("" for NULL), under its name.
#define ES_TS(column)                                        \
  "coalesce(to_char(" column " AT TIME ZONE 'UTC', "         \
  "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') AS " column
// A row of es_producer.webhook_request as ReadRequest reads it.
#define ES_REQUEST_COLUMNS                                                    \
  "id, request_id, webhook, seq, doctype, docname, doc_event, url, method,"  \
  " headers::text AS headers, body, status, attempts, " ES_TS(               \
      "next_attempt_at") ","                                                  \
  " coalesce(response_code, 0) AS response_code,"                            \
  " coalesce(response_body, '') AS response_body,"                           \
  " coalesce(error, '') AS error, coalesce(duration_ms, 0) AS duration_ms, " \
  ES_TS("created_at") ", " ES_TS("first_attempt_at") ", "                    \
  ES_TS("last_attempt_at") ", " ES_TS("finished_at")

constexpr pg::Query kWebhookDocTypes{
    "webhook_doctypes", "SELECT DISTINCT doctype FROM es_producer.webhook"};
// Config webhooks that left the config go, their Queued requests Failed.
constexpr pg::Query kDropRemovedConfigWebhooks{
    "webhook_drop_removed_config",
    "WITH gone AS (DELETE FROM es_producer.webhook WHERE from_config"
    "  AND NOT (name IN (SELECT jsonb_array_elements_text($1::jsonb)))"
    "  RETURNING name)"
    " UPDATE es_producer.webhook_request SET status = 'Failed',"
    "  error = 'webhook deleted (removed from the config)',"
    "  finished_at = now()"
    " WHERE status = 'Queued' AND webhook IN (SELECT name FROM gone)"};
// A config webhook in; a new one's cursor at the log's end.
constexpr pg::Query kUpsertConfigWebhook{
    "webhook_upsert_config",
    "INSERT INTO es_producer.webhook (name, doctype, definition,"
    "  from_config, last_seq)"
    " VALUES ($1, $2, $3::jsonb, true,"
    "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))"
    " ON CONFLICT (name) DO UPDATE SET doctype = EXCLUDED.doctype,"
    "  definition = EXCLUDED.definition, from_config = true,"
    "  updated_at = CASE WHEN webhook.definition = EXCLUDED.definition"
    "    THEN webhook.updated_at ELSE now() END"};
constexpr pg::Query kListWebhooks{
    "webhook_list",
    "SELECT w.definition::text AS definition, w.from_config, c.last_seq"
    " FROM es_producer.webhook w JOIN es_producer.webhook_cursor c USING (name)"
    " ORDER BY name"};
constexpr pg::Query kGetWebhook{
    "webhook_get",
    "SELECT w.definition::text AS definition, w.from_config, c.last_seq"
    " FROM es_producer.webhook w JOIN es_producer.webhook_cursor c USING (name)"
    " WHERE name = $1"};
// A runtime webhook in (no row back when $1 is a config webhook's name).
constexpr pg::Query kUpsertRuntimeWebhook{
    "webhook_upsert_runtime",
    "INSERT INTO es_producer.webhook (name, doctype, definition, last_seq)"
    " VALUES ($1, $2, $3::jsonb,"
    "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))"
    " ON CONFLICT (name) DO UPDATE SET doctype = EXCLUDED.doctype,"
    "  definition = EXCLUDED.definition, updated_at = now()"
    "  WHERE NOT webhook.from_config"
    " RETURNING (xmax = 0) AS created"};
constexpr pg::Query kDeleteRuntimeWebhook{
    "webhook_delete_runtime",
    "DELETE FROM es_producer.webhook WHERE name = $1 AND NOT from_config"};
constexpr pg::Query kFailQueuedOfWebhook{
    "webhook_fail_queued",
    "UPDATE es_producer.webhook_request SET status = 'Failed',"
    " error = 'webhook deleted', finished_at = now()"
    " WHERE webhook = $1 AND status = 'Queued'"};
constexpr pg::Query kListRequests{
    "webhook_list_requests",
    "SELECT " ES_REQUEST_COLUMNS " FROM es_producer.webhook_request"
    " WHERE ($1 = '' OR webhook = $1) AND ($2 = '' OR doctype = $2)"
    "  AND ($3 = '' OR docname = $3) AND ($4 = '' OR status = $4)"
    "  AND ($5::bigint = 0 OR id < $5::bigint)"
    " ORDER BY id DESC LIMIT $6::int"};
constexpr pg::Query kGetRequest{
    "webhook_get_request",
    "SELECT " ES_REQUEST_COLUMNS " FROM es_producer.webhook_request"
    " WHERE id = $1"};
constexpr pg::Query kRetryRequest{
    "webhook_retry_request",
    "UPDATE es_producer.webhook_request SET status = 'Queued',"
    " attempts = 0, next_attempt_at = now(), finished_at = NULL"
    " WHERE id = $1"};
#undef ES_REQUEST_COLUMNS
#undef ES_TS

int64_t Int(const pg::Result& r, int row, const char* column) {
  return r.GetInt64(row, r.ColumnIndex(column));
}

std::string Str(const Value& obj, absl::string_view key) {
  const Value* v = obj.Find(std::string_view(key.data(), key.size()));
  return v != nullptr && v->is_string() ? v->as_string() : std::string();
}

bool Bool(const Value& obj, absl::string_view key, bool fallback) {
  const Value* v = obj.Find(std::string_view(key.data(), key.size()));
  return v != nullptr && v->is_bool() ? v->as_bool() : fallback;
}

void SetOrigin(const std::string& name, absl::string_view key, SecretRef* ref) {
  ref->origin = absl::StrCat("webhook \"", name, "\": ", key);
}

WebhookRequestRow ReadRequest(const pg::Result& r, int i) {
  WebhookRequestRow row;
  row.id = Int(r, i, "id");
  row.request_id = std::string(r.Get(i, "request_id"));
  row.webhook = std::string(r.Get(i, "webhook"));
  row.seq = Int(r, i, "seq");
  row.doctype = std::string(r.Get(i, "doctype"));
  row.docname = std::string(r.Get(i, "docname"));
  row.doc_event = std::string(r.Get(i, "doc_event"));
  row.url = std::string(r.Get(i, "url"));
  row.method = std::string(r.Get(i, "method"));
  auto headers = Value::ParseJson(std::string(r.Get(i, "headers")));
  if (headers.ok() && headers->is_array()) {
    for (const Value& h : headers->as_array()) {
      if (h.is_array() && h.as_array().size() == 2 &&
          h.as_array()[0].is_string() && h.as_array()[1].is_string()) {
        row.headers.emplace_back(h.as_array()[0].as_string(),
                                 h.as_array()[1].as_string());
      }
    }
  }
  row.body = std::string(r.Get(i, "body"));
  row.status = std::string(r.Get(i, "status"));
  row.attempts = static_cast<int>(Int(r, i, "attempts"));
  row.next_attempt_at = std::string(r.Get(i, "next_attempt_at"));
  row.response_code = static_cast<int>(Int(r, i, "response_code"));
  row.response_body = std::string(r.Get(i, "response_body"));
  row.error = std::string(r.Get(i, "error"));
  row.duration_ms = static_cast<int>(Int(r, i, "duration_ms"));
  row.created_at = std::string(r.Get(i, "created_at"));
  row.first_attempt_at = std::string(r.Get(i, "first_attempt_at"));
  row.last_attempt_at = std::string(r.Get(i, "last_attempt_at"));
  row.finished_at = std::string(r.Get(i, "finished_at"));
  return row;
}

// A row of kListWebhooks / kGetWebhook.
absl::StatusOr<WebhookRow> ReadWebhook(const pg::Result& r, int i) {
  ASSIGN_OR_RETURN(Value json, Value::ParseJson(std::string(r.Get(i, "definition"))));
  ASSIGN_OR_RETURN(WebhookConfig hook, WebhookFromJson(json));
  return WebhookRow{std::move(hook), r.GetBool(i, r.ColumnIndex("from_config")),
                    Int(r, i, "last_seq")};
}

}  // namespace

Value WebhookToJson(const WebhookConfig& hook) {
  Value v = Value::EmptyObject();
  v["name"] = Value::String(hook.name);
  v["doctype"] = Value::String(hook.doctype);
  v["doc_event"] = Value::String(hook.doc_event);
  v["enabled"] = Value::Bool(hook.enabled);
  v["condition"] = Value::String(hook.condition);
  v["request_url"] = Value::String(hook.request_url);
  v["request_method"] = Value::String(hook.request_method);
  Value::Array headers;
  for (const WebhookHeaderConfig& h : hook.headers) {
    Value hv = Value::EmptyObject();
    hv["key"] = Value::String(h.key);
    hv["value"] = Value::String(h.value);
    hv["value_env"] = Value::String(h.secret.env);
    hv["value_file"] = Value::String(h.secret.file);
    headers.push_back(std::move(hv));
  }
  v["headers"] = Value::FromArray(std::move(headers));
  v["request_structure"] = Value::String(hook.request_structure);
  Value::Array data;
  for (const WebhookFieldConfig& f : hook.webhook_data) {
    Value fv = Value::EmptyObject();
    fv["fieldname"] = Value::String(f.fieldname);
    fv["key"] = Value::String(f.key);
    data.push_back(std::move(fv));
  }
  v["webhook_data"] = Value::FromArray(std::move(data));
  v["webhook_json"] = Value::String(hook.webhook_json);
  v["timeout_ms"] = Value::Int(absl::ToInt64Milliseconds(hook.timeout));
  v["enable_security"] = Value::Bool(hook.enable_security);
  v["secret_env"] = Value::String(hook.secret.env);
  v["secret_file"] = Value::String(hook.secret.file);
  return v;
}

absl::StatusOr<WebhookConfig> WebhookFromJson(const Value& v) {
  if (!v.is_object()) {
    return absl::InvalidArgumentError("webhook definition: expected an object");
  }
  WebhookConfig hook;
  hook.name = Str(v, "name");
  hook.doctype = Str(v, "doctype");
  hook.doc_event = Str(v, "doc_event");
  hook.enabled = Bool(v, "enabled", true);
  hook.condition = Str(v, "condition");
  hook.request_url = Str(v, "request_url");
  hook.request_method = Str(v, "request_method");
  if (const Value* hs = v.Find("headers"); hs != nullptr && hs->is_array()) {
    for (const Value& hv : hs->as_array()) {
      WebhookHeaderConfig h;
      h.key = Str(hv, "key");
      h.value = Str(hv, "value");
      h.secret.env = Str(hv, "value_env");
      h.secret.file = Str(hv, "value_file");
      SetOrigin(hook.name, absl::StrCat("header ", h.key), &h.secret);
      hook.headers.push_back(std::move(h));
    }
  }
  hook.request_structure = Str(v, "request_structure");
  if (const Value* ds = v.Find("webhook_data"); ds != nullptr && ds->is_array()) {
    for (const Value& fv : ds->as_array()) {
      hook.webhook_data.push_back({Str(fv, "fieldname"), Str(fv, "key")});
    }
  }
  hook.webhook_json = Str(v, "webhook_json");
  int64_t timeout_ms = 5000;
  if (const Value* t = v.Find("timeout_ms"); t != nullptr && t->is_number()) {
    if (!absl::SimpleAtoi(t->number_text(), &timeout_ms)) timeout_ms = 5000;
  }
  hook.timeout = absl::Milliseconds(timeout_ms);
  hook.enable_security = Bool(v, "enable_security", false);
  hook.secret.env = Str(v, "secret_env");
  hook.secret.file = Str(v, "secret_file");
  SetOrigin(hook.name, hook.secret.env.empty() ? "secret_file" : "secret_env",
            &hook.secret);
  return hook;
}

WebhookStore::WebhookStore(const Config* config, pg::ConnectionPool* pool,
                           EnsureCapture ensure_capture)
    : config_(config), pool_(pool), ensure_capture_(std::move(ensure_capture)) {}

absl::StatusOr<std::set<std::string>> WebhookStore::DocTypes(
    pg::Connection* conn, const DocTypeRegistry& registry) {
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kWebhookDocTypes));
  std::set<std::string> out;
  for (int i = 0; i < r.rows(); ++i) {
    std::string doctype(r.Get(i, "doctype"));
    const DocTypeDef* def = registry.Find(doctype);
    if (def != nullptr && !def->istable) out.insert(std::move(doctype));
  }
  return out;
}

absl::Status WebhookStore::WithCapture(pg::Connection* conn,
                                       const std::set<std::string>& extra,
                                       const std::function<absl::Status()>& then) {
  if (auto r = conn->Exec(kApprovalsLock); !r.ok()) return r.status();
  absl::Status status;
  {
    auto ddl = pool_->Acquire();
    status = ddl.ok() ? ensure_capture_(ddl->get(), extra) : ddl.status();
  }
  if (!status.ok()) {
    status = absl::FailedPreconditionError(
        absl::StrCat("cannot install capture for the webhook's DocType; "
                     "nothing was changed: ",
                     status.message()));
  } else {
    status = then();
  }
  // Dying while holding the session lock releases it with the connection.
  if (auto r = conn->Exec(kApprovalsUnlock); !r.ok() && status.ok()) {
    status = r.status();
  }
  return status;
}

absl::Status WebhookStore::SyncConfig() {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  std::set<std::string> doctypes;
  Value::Array names;
  for (const WebhookConfig& w : config_->producer->webhooks) {
    doctypes.insert(w.doctype);
    names.push_back(Value::String(w.name));
  }
  const std::string names_json = Value::FromArray(std::move(names)).ToJson();
  return WithCapture(conn.get(), doctypes, [&]() -> absl::Status {
    // One transaction: a crash midway leaves the previous set of config
    // webhooks (and their queued requests) as they were.
    ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get()));
    RETURN_IF_ERROR(conn->Exec(kDropRemovedConfigWebhooks, {names_json}).status());
    for (const WebhookConfig& w : config_->producer->webhooks) {
      RETURN_IF_ERROR(conn->Exec(kUpsertConfigWebhook,
                                 {w.name, w.doctype, WebhookToJson(w).ToJson()})
                          .status());
    }
    return tx->Commit();
  });
}

absl::StatusOr<std::vector<WebhookRow>> WebhookStore::List() {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kListWebhooks));
  std::vector<WebhookRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    ASSIGN_OR_RETURN(WebhookRow row, ReadWebhook(r, i));
    out.push_back(std::move(row));
  }
  return out;
}

absl::StatusOr<WebhookRow> WebhookStore::Get(absl::string_view name) {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kGetWebhook, {name}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook \"", name, "\""));
  }
  return ReadWebhook(r, 0);
}

absl::StatusOr<WebhookRow> WebhookStore::Upsert(const WebhookConfig& hook,
                                                bool* created) {
  auto problem = CheckWebhook(hook, config_->registry);
  if (!problem) {
    problem = CheckRuntimeWebhookSecrets(
        hook, config_->producer->webhook_delivery.runtime_secret_env);
  }
  if (problem) {
    return absl::InvalidArgumentError(absl::StrCat(
        "webhook \"", hook.name, "\": ", problem->key, ": ", problem->message));
  }
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  RETURN_IF_ERROR(WithCapture(conn.get(), {hook.doctype}, [&]() -> absl::Status {
    // One statement: the definition and (for a new webhook) its cursor at
    // the current log position are written together or not at all.
    ASSIGN_OR_RETURN(pg::Result r,
                     conn->Exec(kUpsertRuntimeWebhook,
                                {hook.name, hook.doctype, WebhookToJson(hook).ToJson()}));
    if (r.rows() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "webhook \"", hook.name,
          "\" is defined in the config (producer.webhooks); change it there"));
    }
    if (created != nullptr) *created = r.GetBool(0, r.ColumnIndex("created"));
    return absl::OkStatus();
  }));
  spdlog::info("webhook {} saved (DocType {}, {})", hook.name, hook.doctype,
               hook.doc_event);
  return Get(hook.name);
}

absl::Status WebhookStore::Delete(absl::string_view name) {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(WebhookRow row, Get(name));
  if (row.from_config) {
    return absl::FailedPreconditionError(absl::StrCat(
        "webhook \"", name,
        "\" is defined in the config (producer.webhooks); remove it there"));
  }
  // One transaction: the webhook and its queued requests go together.
  ASSIGN_OR_RETURN(auto tx, pg::Transaction::Begin(conn.get()));
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kDeleteRuntimeWebhook, {name}));
  if (r.affected_rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook \"", name, "\""));
  }
  RETURN_IF_ERROR(conn->Exec(kFailQueuedOfWebhook, {name}).status());
  RETURN_IF_ERROR(tx->Commit());
  spdlog::info("webhook {} deleted", std::string(name));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<WebhookRequestRow>> WebhookStore::ListRequests(
    const WebhookRequestFilter& filter) {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  int limit = filter.limit <= 0 ? 100 : std::min(filter.limit, 1000);
  ASSIGN_OR_RETURN(pg::Result r,
                   conn->Exec(kListRequests,
                              {filter.webhook, filter.doctype, filter.docname,
                               filter.status, filter.before_id, limit}));
  std::vector<WebhookRequestRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(ReadRequest(r, i));
  return out;
}

absl::StatusOr<WebhookRequestRow> WebhookStore::GetRequest(int64_t id) {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kGetRequest, {id}));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook request ", id));
  }
  return ReadRequest(r, 0);
}

absl::StatusOr<WebhookRequestRow> WebhookStore::Retry(int64_t id) {
  ASSIGN_OR_RETURN(pg::ConnectionPool::Lease conn, pool_->Acquire());
  // One statement. A row a worker is sending right now is locked; this
  // waits for that attempt to finish and then queues it again.
  ASSIGN_OR_RETURN(pg::Result r, conn->Exec(kRetryRequest, {id}));
  if (r.affected_rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook request ", id));
  }
  spdlog::info("webhook request {} queued again by RetryWebhookRequest", id);
  return GetRequest(id);
}

}  // namespace eventstream
