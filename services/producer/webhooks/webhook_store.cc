#include "services/producer/webhooks/webhook_store.h"

#include <memory>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libsync/webhook_template.h"
#include "services/producer/approvals_lock.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {

constexpr char kTime[] =
    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

std::string Ts(absl::string_view column) {
  return absl::StrCat("coalesce(to_char(", column, " AT TIME ZONE 'UTC', ",
                      kTime, "), '')");
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

std::string RequestColumns() {
  return absl::StrCat(
      "id, request_id, webhook, seq, doctype, docname, doc_event, url, method,"
      " headers::text, body, status, attempts, ",
      Ts("next_attempt_at"),
      ", coalesce(response_code, 0), coalesce(response_body, ''),"
      " coalesce(error, ''), coalesce(duration_ms, 0), ",
      Ts("created_at"), ", ", Ts("first_attempt_at"), ", ",
      Ts("last_attempt_at"), ", ", Ts("finished_at"));
}

WebhookRequestRow ReadRequest(const pg::Result& r, int i) {
  WebhookRequestRow row;
  row.id = r.GetInt64(i, 0);
  row.request_id = std::string(r.Get(i, 1));
  row.webhook = std::string(r.Get(i, 2));
  row.seq = r.GetInt64(i, 3);
  row.doctype = std::string(r.Get(i, 4));
  row.docname = std::string(r.Get(i, 5));
  row.doc_event = std::string(r.Get(i, 6));
  row.url = std::string(r.Get(i, 7));
  row.method = std::string(r.Get(i, 8));
  auto headers = Value::ParseJson(std::string(r.Get(i, 9)));
  if (headers.ok() && headers->is_array()) {
    for (const Value& h : headers->as_array()) {
      if (h.is_array() && h.as_array().size() == 2 &&
          h.as_array()[0].is_string() && h.as_array()[1].is_string()) {
        row.headers.emplace_back(h.as_array()[0].as_string(),
                                 h.as_array()[1].as_string());
      }
    }
  }
  row.body = std::string(r.Get(i, 10));
  row.status = std::string(r.Get(i, 11));
  row.attempts = static_cast<int>(r.GetInt64(i, 12));
  row.next_attempt_at = std::string(r.Get(i, 13));
  row.response_code = static_cast<int>(r.GetInt64(i, 14));
  row.response_body = std::string(r.Get(i, 15));
  row.error = std::string(r.Get(i, 16));
  row.duration_ms = static_cast<int>(r.GetInt64(i, 17));
  row.created_at = std::string(r.Get(i, 18));
  row.first_attempt_at = std::string(r.Get(i, 19));
  row.last_attempt_at = std::string(r.Get(i, 20));
  row.finished_at = std::string(r.Get(i, 21));
  return row;
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
  auto r = conn->Exec("SELECT DISTINCT doctype FROM es_producer.webhook");
  if (!r.ok()) return r.status();
  std::set<std::string> out;
  for (int i = 0; i < r->rows(); ++i) {
    std::string doctype(r->Get(i, 0));
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
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  std::set<std::string> doctypes;
  std::vector<std::string> names;
  for (const WebhookConfig& w : config_->producer->webhooks) {
    doctypes.insert(w.doctype);
    names.push_back(w.name);
  }
  return WithCapture(conn->get(), doctypes, [&]() -> absl::Status {
    // One transaction: a crash midway leaves the previous set of config
    // webhooks (and their queued requests) as they were.
    auto tx = pg::Transaction::Begin(conn->get());
    if (!tx.ok()) return tx.status();
    Value::Array name_list;
    for (const std::string& n : names) name_list.push_back(Value::String(n));
    std::string names_json = Value::FromArray(std::move(name_list)).ToJson();
    auto gone = (*conn)->Exec(
        "WITH gone AS (DELETE FROM es_producer.webhook WHERE from_config"
        "  AND NOT (name IN (SELECT jsonb_array_elements_text($1::jsonb)))"
        "  RETURNING name)"
        " UPDATE es_producer.webhook_request SET status = 'Failed',"
        "  error = 'webhook deleted (removed from the config)',"
        "  finished_at = now()"
        " WHERE status = 'Queued' AND webhook IN (SELECT name FROM gone)",
        {names_json});
    if (!gone.ok()) return gone.status();
    for (const WebhookConfig& w : config_->producer->webhooks) {
      auto r = (*conn)->Exec(
          "INSERT INTO es_producer.webhook (name, doctype, definition,"
          "  from_config, last_seq)"
          " VALUES ($1, $2, $3::jsonb, true,"
          "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))"
          " ON CONFLICT (name) DO UPDATE SET doctype = EXCLUDED.doctype,"
          "  definition = EXCLUDED.definition, from_config = true,"
          "  updated_at = CASE WHEN webhook.definition = EXCLUDED.definition"
          "    THEN webhook.updated_at ELSE now() END",
          {w.name, w.doctype, WebhookToJson(w).ToJson()});
      if (!r.ok()) return r.status();
    }
    return (*tx)->Commit();
  });
}

absl::StatusOr<std::vector<WebhookRow>> WebhookStore::List() {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->Exec(
      "SELECT w.definition::text, w.from_config, c.last_seq"
      " FROM es_producer.webhook w JOIN es_producer.webhook_cursor c USING (name)"
      " ORDER BY name");
  if (!r.ok()) return r.status();
  std::vector<WebhookRow> out;
  for (int i = 0; i < r->rows(); ++i) {
    auto json = Value::ParseJson(std::string(r->Get(i, 0)));
    if (!json.ok()) return json.status();
    auto hook = WebhookFromJson(*json);
    if (!hook.ok()) return hook.status();
    out.push_back({std::move(*hook), r->GetBool(i, 1), r->GetInt64(i, 2)});
  }
  return out;
}

absl::StatusOr<WebhookRow> WebhookStore::Get(absl::string_view name) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->Exec(
      "SELECT w.definition::text, w.from_config, c.last_seq"
      " FROM es_producer.webhook w JOIN es_producer.webhook_cursor c USING (name)"
      " WHERE name = $1",
      {name});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook \"", name, "\""));
  }
  auto json = Value::ParseJson(std::string(r->Get(0, 0)));
  if (!json.ok()) return json.status();
  auto hook = WebhookFromJson(*json);
  if (!hook.ok()) return hook.status();
  return WebhookRow{std::move(*hook), r->GetBool(0, 1), r->GetInt64(0, 2)};
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
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  absl::Status status = WithCapture(conn->get(), {hook.doctype}, [&]() -> absl::Status {
    // One statement: the definition and (for a new webhook) its cursor at
    // the current log position are written together or not at all.
    auto r = (*conn)->Exec(
        "INSERT INTO es_producer.webhook (name, doctype, definition, last_seq)"
        " VALUES ($1, $2, $3::jsonb,"
        "  (SELECT coalesce(max(seq), 0) FROM es_producer.update_log))"
        " ON CONFLICT (name) DO UPDATE SET doctype = EXCLUDED.doctype,"
        "  definition = EXCLUDED.definition, updated_at = now()"
        "  WHERE NOT webhook.from_config"
        " RETURNING (xmax = 0)",
        {hook.name, hook.doctype, WebhookToJson(hook).ToJson()});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "webhook \"", hook.name,
          "\" is defined in the config (producer.webhooks); change it there"));
    }
    if (created != nullptr) *created = r->GetBool(0, 0);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  spdlog::info("webhook {} saved (DocType {}, {})", hook.name, hook.doctype,
               hook.doc_event);
  return Get(hook.name);
}

absl::Status WebhookStore::Delete(absl::string_view name) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto row = Get(name);
  if (!row.ok()) return row.status();
  if (row->from_config) {
    return absl::FailedPreconditionError(absl::StrCat(
        "webhook \"", name,
        "\" is defined in the config (producer.webhooks); remove it there"));
  }
  // One transaction: the webhook and its queued requests go together.
  auto tx = pg::Transaction::Begin(conn->get());
  if (!tx.ok()) return tx.status();
  auto r = (*conn)->Exec(
      "DELETE FROM es_producer.webhook WHERE name = $1 AND NOT from_config",
      {name});
  if (!r.ok()) return r.status();
  if (r->affected_rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook \"", name, "\""));
  }
  auto q = (*conn)->Exec(
      "UPDATE es_producer.webhook_request SET status = 'Failed',"
      " error = 'webhook deleted', finished_at = now()"
      " WHERE webhook = $1 AND status = 'Queued'",
      {name});
  if (!q.ok()) return q.status();
  if (absl::Status s = (*tx)->Commit(); !s.ok()) return s;
  spdlog::info("webhook {} deleted", std::string(name));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<WebhookRequestRow>> WebhookStore::ListRequests(
    const WebhookRequestFilter& filter) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  int limit = filter.limit <= 0 ? 100 : std::min(filter.limit, 1000);
  auto r = (*conn)->Exec(
      absl::StrCat("SELECT ", RequestColumns(),
                   " FROM es_producer.webhook_request"
                   " WHERE ($1 = '' OR webhook = $1) AND ($2 = '' OR doctype = $2)"
                   "  AND ($3 = '' OR docname = $3) AND ($4 = '' OR status = $4)"
                   "  AND ($5::bigint = 0 OR id < $5::bigint)"
                   " ORDER BY id DESC LIMIT $6::int"),
      {filter.webhook, filter.doctype, filter.docname, filter.status,
       filter.before_id, limit});
  if (!r.ok()) return r.status();
  std::vector<WebhookRequestRow> out;
  for (int i = 0; i < r->rows(); ++i) out.push_back(ReadRequest(*r, i));
  return out;
}

absl::StatusOr<WebhookRequestRow> WebhookStore::GetRequest(int64_t id) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  auto r = (*conn)->Exec(absl::StrCat("SELECT ", RequestColumns(),
                                      " FROM es_producer.webhook_request"
                                      " WHERE id = $1"),
                         {id});
  if (!r.ok()) return r.status();
  if (r->rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook request ", id));
  }
  return ReadRequest(*r, 0);
}

absl::StatusOr<WebhookRequestRow> WebhookStore::Retry(int64_t id) {
  auto conn = pool_->Acquire();
  if (!conn.ok()) return conn.status();
  // One statement. A row a worker is sending right now is locked; this
  // waits for that attempt to finish and then queues it again.
  auto r = (*conn)->Exec(
      "UPDATE es_producer.webhook_request SET status = 'Queued',"
      " attempts = 0, next_attempt_at = now(), finished_at = NULL"
      " WHERE id = $1",
      {id});
  if (!r.ok()) return r.status();
  if (r->affected_rows() == 0) {
    return absl::NotFoundError(absl::StrCat("no webhook request ", id));
  }
  spdlog::info("webhook request {} queued again by RetryWebhookRequest", id);
  return GetRequest(id);
}

}  // namespace eventstream
