#include "libsync/config/config.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libsync/config/config_reader.h"
#include "libsync/config/subscription_condition.h"
#include "libsync/config/webhook_template.h"
#include "libsync/wal/replication_stream.h"
#include "yaml-cpp/yaml.h"

// The producer's section of the config (producer:): its listeners, keys,
// consumer sites, webhooks, webhook delivery and retention.

namespace eventstream {
namespace config_internal {

absl::Status Parser::ParseProducer(const YAML::Node& node,
                                   const DocTypeRegistry& registry,
                                   ProducerConfig* producer) {
  MapReader m(errors_, "producer");
  RETURN_IF_ERROR(m.Open(
      node, {"listen", "metrics_listen", "tls", "notify_tls", "api_keys",
             "consumers", "condition_functions", "webhooks", "webhook_delivery",
             "database_pool", "max_concurrent_calls_per_key", "retention",
             "capture", "wal_slot", "wal_publication"}));
  RETURN_IF_ERROR(m.Enum<CaptureMode>(
      "capture", {{"trigger", CaptureMode::kTrigger}, {"wal", CaptureMode::kWal}},
      &producer->capture));
  for (auto [key, out] : {std::pair{"wal_slot", &producer->wal_slot},
                          std::pair{"wal_publication", &producer->wal_publication}}) {
    std::string name;
    RETURN_IF_ERROR(m.String(key, &name));
    if (name.empty()) continue;  // `key: ""` keeps the default
    if (!wal::ValidSlotName(name)) {
      return errors_.At(m.PathOf(key), "expected 1-63 of a-z, 0-9, '_'");
    }
    *out = name;
  }
  RETURN_IF_ERROR(m.Address("listen", &producer->listen));
  if (producer->listen.empty()) producer->listen = "0.0.0.0:50051";
  RETURN_IF_ERROR(m.Address("metrics_listen", &producer->metrics_listen));
  RETURN_IF_ERROR(
      ParseDatabasePool(m.Get("database_pool"), &producer->database_pool));
  RETURN_IF_ERROR(Int(m, "max_concurrent_calls_per_key", 1, 1000,
                      &producer->max_concurrent_calls_per_key));
  if (m.Has("tls")) {
    RETURN_IF_ERROR(ParseTlsServer(m.Get("tls"), m.PathOf("tls"),
                                   &producer->tls.emplace()));
  }
  if (m.Has("notify_tls")) {
    RETURN_IF_ERROR(ParseTlsClient(m.Get("notify_tls"), m.PathOf("notify_tls"),
                                   &producer->notify_tls.emplace()));
  }
  RETURN_IF_ERROR(ParseApiKeys(m, false, &producer->api_keys));
  RETURN_IF_ERROR(ParseConditionFunctions(m, &producer->condition_functions));
  RETURN_IF_ERROR(m.List(
      "consumers", &producer->consumers,
      [&](const YAML::Node& n, const std::string& p, ConsumerSiteConfig* c) {
        return ParseConsumerSite(n, p, registry, c);
      }));
  RETURN_IF_ERROR(ParseWebhooks(m, registry, &producer->webhooks));
  std::vector<std::string> own_secret_env = {"ES_DATABASE_URL"};
  for (const ApiKeyConfig& k : producer->api_keys) {
    if (!k.secret.env.empty()) own_secret_env.push_back(k.secret.env);
  }
  RETURN_IF_ERROR(ParseWebhookDelivery(
      m.Get("webhook_delivery"), own_secret_env, &producer->webhook_delivery));
  RETURN_IF_ERROR(ParseRetention(m.Get("retention"), &producer->retention));
  return CheckConsumerSites(producer->consumers);
}

// producer.database_pool.
absl::Status Parser::ParseDatabasePool(const YAML::Node& node,
                                       DatabasePoolConfig* pool) {
  MapReader pm(errors_, "producer.database_pool");
  RETURN_IF_ERROR(pm.Open(node, {"max_connections", "acquire_timeout"}));
  RETURN_IF_ERROR(Int(pm, "max_connections", 1, 1000, &pool->max_connections));
  return pm.Duration("acquire_timeout", &pool->acquire_timeout);
}

// producer.condition_functions: schema.function names of PostgreSQL
// functions conditions may call, stored as ParseConditionFunction names them.
absl::Status Parser::ParseConditionFunctions(const MapReader& m,
                                             std::vector<std::string>* out) {
  return m.List(
      "condition_functions", out,
      [&](const YAML::Node& n, const std::string& p, std::string* f) {
        if (!n.IsScalar()) return errors_.At(p, "expected a string");
        *f = n.Scalar();
        auto parsed = ParseConditionFunction(absl::StrCat("cmd:", *f));
        if (!parsed.ok()) {
          return errors_.At(p, "expected schema.function (a PostgreSQL function)");
        }
        *f = (*parsed)->Name();
        return absl::OkStatus();
      });
}

// producer.consumers[]: a consumer site and the DocTypes it may subscribe.
absl::Status Parser::ParseConsumerSite(const YAML::Node& node,
                                       const std::string& path,
                                       const DocTypeRegistry& registry,
                                       ConsumerSiteConfig* c) {
  MapReader cm(errors_, path);
  RETURN_IF_ERROR(cm.Open(node, {"site", "doctypes"}));
  RETURN_IF_ERROR(cm.String("site", &c->site, true));
  if (!IsPlainName(c->site)) {
    return errors_.At(cm.PathOf("site"),
                      "expected a site name (letters, digits, '.', "
                      "'_', '-')");
  }
  return cm.List(
      "doctypes", &c->doctypes,
      [&](const YAML::Node& dn, const std::string& dp,
          ConsumerDocTypeConfig* d) {
        MapReader dm(errors_, dp);
        RETURN_IF_ERROR(dm.Open(dn, {"doctype", "status", "condition"}));
        RETURN_IF_ERROR(dm.String("doctype", &d->doctype, true));
        RETURN_IF_ERROR(
            CheckSubscribable(dm.PathOf("doctype"), registry, d->doctype));
        RETURN_IF_ERROR(dm.Enum<SubscriptionStatus>(
            "status",
            {{"approved", SubscriptionStatus::kApproved},
             {"pending", SubscriptionStatus::kPending},
             {"rejected", SubscriptionStatus::kRejected}},
            &d->status));
        RETURN_IF_ERROR(dm.String("condition", &d->condition));
        return CheckCondition(dm.PathOf("condition"), d->condition);
      });
}

// producer.webhooks[], whose names are unique.
absl::Status Parser::ParseWebhooks(const MapReader& m,
                                   const DocTypeRegistry& registry,
                                   std::vector<WebhookConfig>* webhooks) {
  RETURN_IF_ERROR(
      m.List("webhooks", webhooks,
             [&](const YAML::Node& n, const std::string& p, WebhookConfig* w) {
               return ParseWebhook(n, p, registry, w);
             }));
  return CheckUnique(errors_, *webhooks, &WebhookConfig::name,
                     "producer.webhooks", "name", "webhook");
}

// Each consumer site is listed once, and each of its DocTypes once.
absl::Status Parser::CheckConsumerSites(
    const std::vector<ConsumerSiteConfig>& consumers) {
  std::map<std::string, size_t> sites;
  for (size_t i = 0; i < consumers.size(); ++i) {
    const ConsumerSiteConfig& c = consumers[i];
    std::string path = IndexPath("producer.consumers", i);
    auto [it, inserted] = sites.emplace(c.site, i);
    if (!inserted) {
      return errors_.At(
          ChildPath(path, "site"),
          absl::StrCat("duplicate consumer site ", Quote(c.site),
                       " (also consumers[", it->second, "])"));
    }
    RETURN_IF_ERROR(CheckUnique(errors_, c.doctypes,
                                &ConsumerDocTypeConfig::doctype,
                                ChildPath(path, "doctypes"), "doctype",
                                "DocType"));
  }
  return absl::OkStatus();
}

absl::Status Parser::ParseWebhookDelivery(
    const YAML::Node& node, const std::vector<std::string>& own_secret_env,
    WebhookDeliveryConfig* d) {
  MapReader m(errors_, "producer.webhook_delivery");
  RETURN_IF_ERROR(
      m.Open(node, {"workers", "max_attempts", "initial_backoff", "max_backoff",
                    "poll_interval", "retention", "nice", "busy_cpu_percent",
                    "runtime_secret_env"}));
  RETURN_IF_ERROR(Int(m, "workers", 1, 64, &d->workers));
  RETURN_IF_ERROR(Int(m, "nice", 0, 19, &d->nice));
  RETURN_IF_ERROR(Int(m, "busy_cpu_percent", 0, 6400, &d->busy_cpu_percent));
  RETURN_IF_ERROR(Int(m, "max_attempts", 1, 100, &d->max_attempts));
  RETURN_IF_ERROR(m.Duration("initial_backoff", &d->initial_backoff));
  RETURN_IF_ERROR(m.Duration("max_backoff", &d->max_backoff));
  RETURN_IF_ERROR(m.Duration("poll_interval", &d->poll_interval));
  RETURN_IF_ERROR(m.Duration("retention", &d->retention));
  if (d->max_backoff < d->initial_backoff) {
    return errors_.At(m.PathOf("max_backoff"),
                      "expected at least initial_backoff");
  }
  return ParseRuntimeSecretEnv(m, own_secret_env, &d->runtime_secret_env);
}

// producer.retention (RetentionConfig). min_age and max_age take 0 (max_age
// 0 = no valve by age); the valve may not be shorter than min_age.
absl::Status Parser::ParseRetention(const YAML::Node& node,
                                    RetentionConfig* r) {
  MapReader m(errors_, "producer.retention");
  RETURN_IF_ERROR(
      m.Open(node, {"min_age", "max_age", "max_entries", "batch", "interval"}));
  RETURN_IF_ERROR(m.DurationOrZero("min_age", &r->min_age));
  RETURN_IF_ERROR(m.DurationOrZero("max_age", &r->max_age));
  int max_entries = static_cast<int>(r->max_entries);
  RETURN_IF_ERROR(Int(m, "max_entries", 0, 2000000000, &max_entries));
  r->max_entries = max_entries;
  RETURN_IF_ERROR(Int(m, "batch", 1, 100000, &r->batch));
  RETURN_IF_ERROR(m.Duration("interval", &r->interval));
  if (r->max_age > absl::ZeroDuration() && r->max_age < r->min_age) {
    return errors_.At(m.PathOf("max_age"),
                      absl::StrCat("expected at least min_age (",
                                   absl::FormatDuration(r->min_age),
                                   "), or 0 for no valve by age"));
  }
  return absl::OkStatus();
}

// producer.webhook_delivery.runtime_secret_env: variable names or NAME_*
// prefixes, none admitting one of `own_secret_env` (the service's own
// secrets: a runtime webhook could send them anywhere).
absl::Status Parser::ParseRuntimeSecretEnv(
    const MapReader& m, const std::vector<std::string>& own_secret_env,
    std::vector<std::string>* out) {
  return m.List(
      "runtime_secret_env", out,
      [&](const YAML::Node& n, const std::string& p, std::string* entry) {
        if (!n.IsScalar()) return errors_.At(p, "expected a string");
        *entry = n.Scalar();
        absl::string_view name = *entry;
        absl::ConsumeSuffix(&name, "*");
        if (!IsIdentifier(name)) {
          return errors_.At(
              p, "expected an environment variable name like "
                 "ES_WEBHOOK_CRM_TOKEN, or a prefix like ES_WEBHOOK_* "
                 "(not * alone)");
        }
        for (const std::string& own : own_secret_env) {
          if (RuntimeSecretEnvAllowed(own, {*entry})) {
            return errors_.At(
                p, absl::StrCat(Quote(*entry), " admits ", own,
                                ", a secret of this service itself; runtime "
                                "webhooks could send it to any URL"));
          }
        }
        return absl::OkStatus();
      });
}

absl::Status Parser::ParseWebhook(const YAML::Node& node,
                                  const std::string& path,
                                  const DocTypeRegistry& registry,
                                  WebhookConfig* w) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(
      node, {"name", "doctype", "doc_event", "enabled", "condition",
             "request_url", "request_method", "headers", "request_structure",
             "webhook_data", "webhook_json", "timeout", "enable_security",
             "secret_env", "secret_file", "webhook_secret"}));
  if (m.Has("webhook_secret")) {
    return errors_.At(m.PathOf("webhook_secret"),
                      "secrets are never inline; use secret_env or "
                      "secret_file");
  }
  RETURN_IF_ERROR(m.String("name", &w->name, true));
  RETURN_IF_ERROR(m.String("doctype", &w->doctype, true));
  RETURN_IF_ERROR(m.String("doc_event", &w->doc_event, true));
  RETURN_IF_ERROR(m.Bool("enabled", &w->enabled));
  RETURN_IF_ERROR(m.String("condition", &w->condition));
  RETURN_IF_ERROR(m.String("request_url", &w->request_url, true));
  RETURN_IF_ERROR(m.Enum<std::string>("request_method",
                                      {{"POST", "POST"},
                                       {"PUT", "PUT"},
                                       {"PATCH", "PATCH"},
                                       {"DELETE", "DELETE"}},
                                      &w->request_method));
  RETURN_IF_ERROR(m.List(
      "headers", &w->headers,
      [&](const YAML::Node& n, const std::string& p, WebhookHeaderConfig* h) {
        MapReader hm(errors_, p);
        RETURN_IF_ERROR(
            hm.Open(n, {"key", "value", "value_env", "value_file"}));
        RETURN_IF_ERROR(hm.String("key", &h->key, true));
        RETURN_IF_ERROR(hm.String("value", &h->value));
        int set = (hm.Has("value") ? 1 : 0) + (hm.Has("value_env") ? 1 : 0) +
                  (hm.Has("value_file") ? 1 : 0);
        if (set != 1) {
          return errors_.At(p,
                            "expected exactly one of value, value_env "
                            "and value_file");
        }
        if (!hm.Has("value")) {
          RETURN_IF_ERROR(
              ParseSecretRef(hm, "value_env", "value_file", &h->secret));
        }
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(m.Enum<std::string>("request_structure",
                                      {{"Form", "Form"}, {"JSON", "JSON"}},
                                      &w->request_structure));
  RETURN_IF_ERROR(m.List(
      "webhook_data", &w->webhook_data,
      [&](const YAML::Node& n, const std::string& p, WebhookFieldConfig* f) {
        MapReader fm(errors_, p);
        RETURN_IF_ERROR(fm.Open(n, {"fieldname", "key"}));
        RETURN_IF_ERROR(fm.String("fieldname", &f->fieldname, true));
        return fm.String("key", &f->key);
      }));
  RETURN_IF_ERROR(m.String("webhook_json", &w->webhook_json));
  RETURN_IF_ERROR(m.Duration("timeout", &w->timeout));
  RETURN_IF_ERROR(m.Bool("enable_security", &w->enable_security));
  if (w->enable_security) {
    RETURN_IF_ERROR(ParseSecretRef(m, "secret_env", "secret_file", &w->secret));
  } else if (m.Has("secret_env") || m.Has("secret_file")) {
    return errors_.At(m.PathOf(m.Has("secret_env") ? "secret_env"
                                                   : "secret_file"),
                      "only used with enable_security: true");
  }
  if (auto problem = CheckWebhook(*w, registry)) {
    return errors_.At(ChildPath(path, problem->key), problem->message);
  }
  return absl::OkStatus();
}

}  // namespace config_internal

const ApiKeyConfig* ProducerConfig::FindApiKey(std::string_view key) const {
  return config_internal::FindBy(api_keys, &ApiKeyConfig::key, key);
}

const ConsumerSiteConfig* ProducerConfig::FindConsumer(
    std::string_view site) const {
  return config_internal::FindBy(consumers, &ConsumerSiteConfig::site, site);
}

}  // namespace eventstream
