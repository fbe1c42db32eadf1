#include "services/producer/webhooks/webhook_service.h"

#include "absl/strings/str_cat.h"
#include "libsync/config/expr.h"
#include "libsync/rules/webhook_rules.h"
#include "libsync/config/webhook_template.h"
#include "services/producer/document_reader.h"
#include "services/producer/webhooks/delivery.h"
#include "spdlog/spdlog.h"

namespace eventstream {
namespace {


void RequestToProto(const WebhookRequestRow& row, v1::WebhookRequest* out) {
  out->set_id(row.id);
  out->set_request_id(row.request_id);
  out->set_webhook(row.webhook);
  out->set_seq(row.seq);
  out->set_doctype(row.doctype);
  out->set_docname(row.docname);
  out->set_doc_event(row.doc_event);
  out->set_url(row.url);
  out->set_method(row.method);
  for (const auto& [k, v] : row.headers) {
    v1::WebhookHeader* h = out->add_headers();
    h->set_key(k);
    h->set_value(v);
  }
  out->set_body(row.body);
  out->set_status(row.status);
  out->set_attempts(row.attempts);
  out->set_next_attempt_at(row.next_attempt_at);
  out->set_response_code(row.response_code);
  out->set_response_body(row.response_body);
  out->set_error(row.error);
  out->set_duration_ms(row.duration_ms);
  out->set_created_at(row.created_at);
  out->set_first_attempt_at(row.first_attempt_at);
  out->set_last_attempt_at(row.last_attempt_at);
  out->set_finished_at(row.finished_at);
}

}  // namespace

WebhookConfig WebhookFromProto(const v1::Webhook& p) {
  WebhookConfig hook;
  hook.name = p.name();
  hook.doctype = p.doctype();
  hook.doc_event = p.doc_event();
  hook.enabled = !p.disabled();
  hook.condition = p.condition();
  hook.request_url = p.request_url();
  hook.request_method = p.request_method().empty() ? "POST" : p.request_method();
  for (const v1::WebhookHeader& h : p.headers()) {
    WebhookHeaderConfig header;
    header.key = h.key();
    header.value = h.value();
    header.secret.env = h.value_env();
    header.secret.file = h.value_file();
    header.secret.origin = absl::StrCat("webhook \"", p.name(), "\": header ", h.key());
    hook.headers.push_back(std::move(header));
  }
  switch (p.request_structure()) {
    case v1::REQUEST_STRUCTURE_JSON: hook.request_structure = "JSON"; break;
    case v1::REQUEST_STRUCTURE_FORM:
    case v1::REQUEST_STRUCTURE_UNSPECIFIED: hook.request_structure = "Form"; break;
    default: hook.request_structure = "?"; break;
  }
  for (const v1::WebhookField& f : p.webhook_data()) {
    hook.webhook_data.push_back({f.fieldname(), f.key()});
  }
  hook.webhook_json = p.webhook_json();
  hook.timeout = absl::Milliseconds(p.timeout_ms() == 0 ? 5000 : p.timeout_ms());
  hook.enable_security = p.enable_security();
  hook.secret.env = p.secret_env();
  hook.secret.file = p.secret_file();
  hook.secret.origin = absl::StrCat("webhook \"", p.name(), "\": secret");
  return hook;
}

void WebhookToProto(const WebhookConfig& hook, v1::Webhook* out) {
  out->set_name(hook.name);
  out->set_doctype(hook.doctype);
  out->set_doc_event(hook.doc_event);
  out->set_disabled(!hook.enabled);
  out->set_condition(hook.condition);
  out->set_request_url(hook.request_url);
  out->set_request_method(hook.request_method);
  for (const WebhookHeaderConfig& h : hook.headers) {
    v1::WebhookHeader* header = out->add_headers();
    header->set_key(h.key);
    header->set_value(h.value);
    header->set_value_env(h.secret.env);
    header->set_value_file(h.secret.file);
  }
  out->set_request_structure(hook.request_structure == "JSON"
                                 ? v1::REQUEST_STRUCTURE_JSON
                                 : v1::REQUEST_STRUCTURE_FORM);
  for (const WebhookFieldConfig& f : hook.webhook_data) {
    v1::WebhookField* field = out->add_webhook_data();
    field->set_fieldname(f.fieldname);
    field->set_key(f.key);
  }
  out->set_webhook_json(hook.webhook_json);
  out->set_timeout_ms(static_cast<int32_t>(absl::ToInt64Milliseconds(hook.timeout)));
  out->set_enable_security(hook.enable_security);
  out->set_secret_env(hook.secret.env);
  out->set_secret_file(hook.secret.file);
}

grpc::Status WebhooksService::ListWebhooks(grpc::ServerContext* context,
                                           const v1::ListWebhooksRequest*,
                                           v1::ListWebhooksResponse* response) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  auto rows = store_->List();
  if (!rows.ok()) return AnswerRpc("Webhooks.ListWebhooks", rows.status());
  for (const WebhookRow& row : *rows) {
    v1::Webhook* w = response->add_webhooks();
    WebhookToProto(row.hook, w);
    w->set_from_config(row.from_config);
    w->set_last_seq(row.last_seq);
  }
  return grpc::Status::OK;
}

grpc::Status WebhooksService::UpsertWebhook(grpc::ServerContext* context,
                                            const v1::UpsertWebhookRequest* request,
                                            v1::UpsertWebhookResponse* response) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  bool created = false;
  auto row = store_->Upsert(WebhookFromProto(request->webhook()), &created);
  if (!row.ok()) return AnswerRpc("Webhooks.UpsertWebhook", row.status());
  WebhookToProto(row->hook, response->mutable_webhook());
  response->mutable_webhook()->set_from_config(row->from_config);
  response->mutable_webhook()->set_last_seq(row->last_seq);
  response->set_created(created);
  return grpc::Status::OK;
}

grpc::Status WebhooksService::DeleteWebhook(grpc::ServerContext* context,
                                            const v1::DeleteWebhookRequest* request,
                                            v1::DeleteWebhookResponse*) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  if (request->name().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "name: required");
  }
  return AnswerRpc("Webhooks.DeleteWebhook", store_->Delete(request->name()));
}

grpc::Status WebhooksService::PreviewWebhook(grpc::ServerContext* context,
                                             const v1::PreviewWebhookRequest* request,
                                             v1::PreviewWebhookResponse* response) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  WebhookConfig hook;
  if (!request->name().empty()) {
    auto row = store_->Get(request->name());
    if (!row.ok()) return AnswerRpc("Webhooks.PreviewWebhook", row.status());
    hook = std::move(row->hook);
  } else {
    hook = WebhookFromProto(request->webhook());
    auto problem = CheckWebhook(hook, config_->registry);
    if (!problem) {
      problem = CheckRuntimeWebhookSecrets(
          hook, config_->producer->webhook_delivery.runtime_secret_env);
    }
    if (problem) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("webhook \"", hook.name, "\": ",
                                       problem->key, ": ", problem->message));
    }
  }
  if (request->docname().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "docname: required");
  }
  const DocTypeDef* def = config_->registry.Find(hook.doctype);
  if (def == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("webhook \"", hook.name, "\": DocType \"",
                                     hook.doctype, "\" is not in the registry"));
  }
  auto conn = pool_->Acquire();
  if (!conn.ok()) return AnswerRpc("Webhooks.PreviewWebhook", conn.status());
  auto doc = ReadDocument(conn->get(), config_->registry, *def, request->docname());
  if (!doc.ok()) return AnswerRpc("Webhooks.PreviewWebhook", doc.status());
  if (!doc->has_value()) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no ", hook.doctype, " \"",
                                     request->docname(), "\""));
  }
  auto built = BuildRequest(hook, **doc);
  if (!built.ok()) return AnswerRpc("Webhooks.PreviewWebhook", built.status());
  response->set_url(built->url);
  response->set_method(built->method);
  for (const auto& [k, v] : built->headers) {
    v1::WebhookHeader* h = response->add_headers();
    h->set_key(k);
    h->set_value(v);
  }
  response->set_body(built->body);
  bool met = true;
  if (!hook.condition.empty()) {
    auto cond = Condition::Parse(hook.condition);
    if (!cond.ok()) return AnswerRpc("Webhooks.PreviewWebhook", cond.status());
    auto result = cond->Evaluate(**doc);
    if (!result.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("webhook \"", hook.name,
                                       "\": condition: ", result.status().message()));
    }
    met = *result;
  }
  response->set_condition_met(met);
  return grpc::Status::OK;
}

grpc::Status WebhooksService::ListWebhookRequests(
    grpc::ServerContext* context, const v1::ListWebhookRequestsRequest* request,
    v1::ListWebhookRequestsResponse* response) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  WebhookRequestFilter filter;
  filter.webhook = request->webhook();
  filter.doctype = request->doctype();
  filter.docname = request->docname();
  filter.status = request->status();
  filter.before_id = request->before_id();
  filter.limit = request->limit();
  auto rows = store_->ListRequests(filter);
  if (!rows.ok()) return AnswerRpc("Webhooks.ListWebhookRequests", rows.status());
  for (const WebhookRequestRow& row : *rows) RequestToProto(row, response->add_requests());
  return grpc::Status::OK;
}

grpc::Status WebhooksService::RetryWebhookRequest(
    grpc::ServerContext* context, const v1::RetryWebhookRequestRequest* request,
    v1::RetryWebhookRequestResponse* response) {
  ES_AUTHORIZE(*auth_, context, Role::kAdmin);
  auto row = store_->Retry(request->id());
  if (!row.ok()) return AnswerRpc("Webhooks.RetryWebhookRequest", row.status());
  RequestToProto(*row, response->mutable_request());
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<WebhookRuntime>> WebhookRuntime::Create(
    std::shared_ptr<const Authenticator> auth,
    std::shared_ptr<const Config> config,
    std::shared_ptr<pg::ConnectionPool> pool,
    WebhookStore::EnsureCapture ensure_capture) {
  std::shared_ptr<WebhookRuntime> runtime(new WebhookRuntime());
  runtime->store_ = std::make_shared<WebhookStore>(config.get(), pool.get(),
                                                   std::move(ensure_capture));
  if (absl::Status s = runtime->store_->SyncConfig(); !s.ok()) return s;
  runtime->delivery_ =
      std::make_unique<WebhookDelivery>(config.get(), config->database.url);
  runtime->service_ = std::make_unique<WebhooksService>(
      std::move(auth), config, std::move(pool), runtime->store_);
  return runtime;
}

}  // namespace eventstream
