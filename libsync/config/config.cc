#include "libsync/config/config.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "libsync/config/config_reader.h"
#include "libsync/config/expr.h"
#include "libsync/config/subscription_condition.h"
#include "libsync/config/webhook_template.h"
#include "libsync/wal/replication_stream.h"
#include "yaml-cpp/yaml.h"

// Internally this file uses absl::string_view: Debian's Abseil is built with
// its own string_view type, which StrCat/StrSplit need; the public API keeps
// std::string_view.

namespace eventstream {
namespace {

using namespace config_internal;  // NOLINT: the loader's own reader (config_reader.h)

// ---- section parsers
// ---------------------------------------------------------

class Parser {
 public:
  explicit Parser(absl::string_view filename) : errors_(filename) {}

  absl::StatusOr<Config> Parse(const YAML::Node& root) {
    Config config;
    config.source = errors_.filename();
    if (!root.IsDefined() || root.IsNull() || !root.IsMap()) {
      return errors_.At("",
                        "expected a mapping with keys site, database, log, "
                        "doctypes, producer, consumer");
    }
    MapReader top(errors_, "");
    ES_CONFIG_RETURN_IF_ERROR(top.Open(
        root, {"site", "database", "log", "doctypes", "producer", "consumer"}));

    ES_CONFIG_RETURN_IF_ERROR(top.Required("site"));
    MapReader site(errors_, "site");
    ES_CONFIG_RETURN_IF_ERROR(site.Open(top.Get("site"), {"name"}));
    ES_CONFIG_RETURN_IF_ERROR(site.String("name", &config.site.name, true));
    if (!IsPlainName(config.site.name)) {
      return errors_.At("site.name",
                        "expected a site name (letters, digits, "
                        "'.', '_', '-')");
    }

    MapReader database(errors_, "database");
    ES_CONFIG_RETURN_IF_ERROR(database.Open(top.Get("database"), {"url"}));
    ES_CONFIG_RETURN_IF_ERROR(database.String("url", &config.database.url));

    MapReader log(errors_, "log");
    ES_CONFIG_RETURN_IF_ERROR(log.Open(top.Get("log"), {"level", "format"}));
    ES_CONFIG_RETURN_IF_ERROR(log.Enum<std::string>("level",
                                                    {{"debug", "debug"},
                                                     {"info", "info"},
                                                     {"warn", "warn"},
                                                     {"error", "error"}},
                                                    &config.log.level));
    ES_CONFIG_RETURN_IF_ERROR(log.Enum<LogFormat>(
        "format", {{"text", LogFormat::kText}, {"json", LogFormat::kJson}},
        &config.log.format));

    std::vector<DocTypeDef> defs;
    ES_CONFIG_RETURN_IF_ERROR(
        top.List("doctypes", &defs,
                 [this](const YAML::Node& n, const std::string& p,
                        DocTypeDef* d) { return ParseDocType(n, p, d); }));
    DocTypeProblem problem;
    absl::StatusOr<DocTypeRegistry> registry =
        DocTypeRegistry::Create(std::move(defs), &problem);
    if (!registry.ok()) {
      std::string path = IndexPath("doctypes", problem.doctype_index);
      if (problem.field_index.has_value()) {
        path = IndexPath(ChildPath(path, "fields"), *problem.field_index);
      }
      return errors_.At(ChildPath(path, problem.key), problem.message);
    }
    config.registry = *std::move(registry);

    if (top.Has("producer")) {
      config.producer.emplace();
      ES_CONFIG_RETURN_IF_ERROR(ParseProducer(
          top.Get("producer"), config.registry, &*config.producer));
    }
    if (top.Has("consumer")) {
      config.consumer.emplace();
      ES_CONFIG_RETURN_IF_ERROR(ParseConsumer(
          top.Get("consumer"), config.registry, &*config.consumer));
    }
    return config;
  }

 private:
  absl::Status ParseDocType(const YAML::Node& node, const std::string& path,
                            DocTypeDef* def) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(m.Open(
        node,
        {"name", "table", "autoname", "istable", "is_submittable", "fields"}));
    ES_CONFIG_RETURN_IF_ERROR(m.String("name", &def->name, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("table", &def->table));
    ES_CONFIG_RETURN_IF_ERROR(m.String("autoname", &def->autoname));
    if (def->autoname.empty()) def->autoname = "hash";
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("istable", &def->istable));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("is_submittable", &def->is_submittable));
    return m.List("fields", &def->fields,
                  [this](const YAML::Node& n, const std::string& p,
                         FieldDef* f) { return ParseField(n, p, f); });
  }

  absl::Status ParseField(const YAML::Node& node, const std::string& path,
                          FieldDef* field) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"fieldname", "fieldtype", "options", "reqd", "default"}));
    ES_CONFIG_RETURN_IF_ERROR(m.String("fieldname", &field->fieldname, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("fieldtype", &field->fieldtype, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("options", &field->options));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("reqd", &field->reqd));
    if (m.Has("default")) {
      std::string value;
      ES_CONFIG_RETURN_IF_ERROR(m.String("default", &value));
      field->default_value = std::move(value);
    }
    return absl::OkStatus();
  }

  // Reads the secret reference of an API key (`env_key`/`file_key` are
  // secret_env/secret_file or api_secret_env/api_secret_file).
  absl::Status ParseSecretRef(const MapReader& m, absl::string_view env_key,
                              absl::string_view file_key, SecretRef* ref) {
    ES_CONFIG_RETURN_IF_ERROR(m.String(env_key, &ref->env));
    ES_CONFIG_RETURN_IF_ERROR(m.String(file_key, &ref->file));
    if (ref->env.empty() && ref->file.empty()) {
      return errors_.At(m.PathOf(env_key),
                        absl::StrCat("required (or ", file_key, ")"));
    }
    if (!ref->env.empty() && !ref->file.empty()) {
      return errors_.At(m.path(), absl::StrCat("set only one of ", env_key,
                                               " and ", file_key));
    }
    if (!ref->env.empty()) {
      if (!IsIdentifier(ref->env)) {
        return errors_.At(m.PathOf(env_key),
                          "expected an environment variable name like "
                          "ES_SECRET_BRANCH1");
      }
      ref->origin = errors_.Origin(m.PathOf(env_key));
    } else {
      ref->origin = errors_.Origin(m.PathOf(file_key));
    }
    return absl::OkStatus();
  }

  // `admin_only`: the consumer's own keys exist for operators only.
  absl::Status ParseApiKeys(const MapReader& section, bool admin_only,
                            std::vector<ApiKeyConfig>* keys) {
    ES_CONFIG_RETURN_IF_ERROR(section.List(
        "api_keys", keys,
        [&](const YAML::Node& n, const std::string& p, ApiKeyConfig* k) {
          MapReader m(errors_, p);
          ES_CONFIG_RETURN_IF_ERROR(
              m.Open(n, {"key", "secret_env", "secret_file", "role"}));
          ES_CONFIG_RETURN_IF_ERROR(m.String("key", &k->key, true));
          if (!IsPlainName(k->key)) {
            return errors_.At(m.PathOf("key"),
                              "expected a key id of letters, digits, '.', "
                              "'_', '-' (no ':')");
          }
          ES_CONFIG_RETURN_IF_ERROR(
              ParseSecretRef(m, "secret_env", "secret_file", &k->secret));
          if (admin_only) {
            ES_CONFIG_RETURN_IF_ERROR(m.Enum<ApiKeyRole>(
                "role", {{"admin", ApiKeyRole::kAdmin}}, &k->role, true));
          } else {
            ES_CONFIG_RETURN_IF_ERROR(
                m.Enum<ApiKeyRole>("role",
                                   {{"consumer", ApiKeyRole::kConsumer},
                                    {"admin", ApiKeyRole::kAdmin}},
                                   &k->role, true));
          }
          return absl::OkStatus();
        }));
    std::map<std::string, size_t> seen;
    for (size_t i = 0; i < keys->size(); ++i) {
      auto [it, inserted] = seen.emplace((*keys)[i].key, i);
      if (!inserted) {
        return errors_.At(
            ChildPath(IndexPath(section.PathOf("api_keys"), i), "key"),
            absl::StrCat("duplicate api key ", Quote((*keys)[i].key),
                         " (also api_keys[", it->second, "])"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status CheckCondition(const std::string& path,
                              const std::string& condition) {
    if (condition.empty()) return absl::OkStatus();
    std::string problem = ConditionProblem(condition);
    if (problem.empty()) return absl::OkStatus();
    return errors_.At(path, problem);
  }

  // A DocType a site subscribes to by name must be a top-level DocType of
  // the registry: child rows travel inside their parent.
  absl::Status CheckSubscribable(const std::string& path,
                                 const DocTypeRegistry& registry,
                                 const std::string& doctype) {
    const DocTypeDef* def = registry.Find(doctype);
    if (def == nullptr) {
      return errors_.At(path, absl::StrCat("unknown DocType ", Quote(doctype),
                                           " (add it under doctypes:)"));
    }
    if (def->istable) {
      return errors_.At(
          path, absl::StrCat(Quote(doctype),
                             " is a child DocType (istable); subscribe to "
                             "its parent DocType instead"));
    }
    return absl::OkStatus();
  }

  // An integer in [lo, hi].
  absl::Status Int(const MapReader& m, absl::string_view key, int lo, int hi,
                   int* out) {
    if (!m.Has(key)) return absl::OkStatus();
    std::string text;
    ES_CONFIG_RETURN_IF_ERROR(m.String(key, &text));
    int value = 0;
    if (!absl::SimpleAtoi(text, &value) || value < lo || value > hi) {
      return errors_.At(m.PathOf(key), absl::StrCat("expected an integer from ",
                                                    lo, " to ", hi));
    }
    *out = value;
    return absl::OkStatus();
  }

  // refresh_interval of a tls section: gRPC re-reads the files in whole
  // seconds, at least one.
  absl::Status RefreshInterval(const MapReader& m, absl::Duration* out) {
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("refresh_interval", out));
    if (*out < absl::Seconds(1) || *out != absl::Trunc(*out, absl::Seconds(1))) {
      return errors_.At(m.PathOf("refresh_interval"),
                        "expected whole seconds, at least 1s (e.g. 60s)");
    }
    return absl::OkStatus();
  }

  // A path key of a tls section: any non-empty text without a newline.
  absl::Status TlsPath(const MapReader& m, absl::string_view key,
                       std::string* out, bool required) {
    ES_CONFIG_RETURN_IF_ERROR(m.String(key, out, required));
    if (out->find_first_of("\n\r") != std::string::npos) {
      return errors_.At(m.PathOf(key), "expected a file path");
    }
    return absl::OkStatus();
  }

  // producer.tls, consumer.tls: a server's certificate (and client CA).
  absl::Status ParseTlsServer(const YAML::Node& node, const std::string& path,
                              TlsServerConfig* tls) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(m.Open(
        node, {"cert_file", "key_file", "client_ca_file", "refresh_interval"}));
    ES_CONFIG_RETURN_IF_ERROR(TlsPath(m, "cert_file", &tls->cert_file, true));
    ES_CONFIG_RETURN_IF_ERROR(TlsPath(m, "key_file", &tls->key_file, true));
    ES_CONFIG_RETURN_IF_ERROR(
        TlsPath(m, "client_ca_file", &tls->client_ca_file, false));
    ES_CONFIG_RETURN_IF_ERROR(RefreshInterval(m, &tls->refresh_interval));
    tls->origin = errors_.Origin(path);
    return absl::OkStatus();
  }

  // consumer.producers[].tls, producer.notify_tls: how a client channel
  // verifies its server, and the certificate it presents.
  absl::Status ParseTlsClient(const YAML::Node& node, const std::string& path,
                              TlsClientConfig* tls) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"ca_file", "server_name", "cert_file", "key_file",
                      "refresh_interval"}));
    ES_CONFIG_RETURN_IF_ERROR(TlsPath(m, "ca_file", &tls->ca_file, false));
    ES_CONFIG_RETURN_IF_ERROR(m.String("server_name", &tls->server_name));
    if (!tls->server_name.empty() &&
        (tls->server_name.find_first_of(" \t\r\n/") != std::string::npos ||
         tls->server_name.find("://") != std::string::npos)) {
      return errors_.At(m.PathOf("server_name"),
                        "expected a host name like hq-producer.example.com "
                        "(no port, no URL)");
    }
    ES_CONFIG_RETURN_IF_ERROR(TlsPath(m, "cert_file", &tls->cert_file, false));
    ES_CONFIG_RETURN_IF_ERROR(TlsPath(m, "key_file", &tls->key_file, false));
    if (tls->cert_file.empty() != tls->key_file.empty()) {
      return errors_.At(
          m.PathOf(tls->cert_file.empty() ? "cert_file" : "key_file"),
          absl::StrCat("required with ",
                       tls->cert_file.empty() ? "key_file" : "cert_file",
                       " (a client certificate needs both)"));
    }
    ES_CONFIG_RETURN_IF_ERROR(RefreshInterval(m, &tls->refresh_interval));
    tls->origin = errors_.Origin(path);
    return absl::OkStatus();
  }

  absl::Status ParseWebhookDelivery(
      const YAML::Node& node, const std::vector<std::string>& own_secret_env,
      WebhookDeliveryConfig* d) {
    MapReader m(errors_, "producer.webhook_delivery");
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"workers", "max_attempts", "initial_backoff",
                      "max_backoff", "poll_interval", "retention", "nice",
                      "busy_cpu_percent", "runtime_secret_env"}));
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "workers", 1, 64, &d->workers));
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "nice", 0, 19, &d->nice));
    ES_CONFIG_RETURN_IF_ERROR(
        Int(m, "busy_cpu_percent", 0, 6400, &d->busy_cpu_percent));
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "max_attempts", 1, 100, &d->max_attempts));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("initial_backoff", &d->initial_backoff));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("max_backoff", &d->max_backoff));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("poll_interval", &d->poll_interval));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("retention", &d->retention));
    if (d->max_backoff < d->initial_backoff) {
      return errors_.At(m.PathOf("max_backoff"),
                        "expected at least initial_backoff");
    }
    return ParseRuntimeSecretEnv(m, own_secret_env, &d->runtime_secret_env);
  }

  // producer.retention (RetentionConfig). min_age and max_age take 0 (max_age
  // 0 = no valve by age); the valve may not be shorter than min_age.
  absl::Status ParseRetention(const YAML::Node& node, RetentionConfig* r) {
    MapReader m(errors_, "producer.retention");
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"min_age", "max_age", "max_entries", "batch", "interval"}));
    ES_CONFIG_RETURN_IF_ERROR(m.DurationOrZero("min_age", &r->min_age));
    ES_CONFIG_RETURN_IF_ERROR(m.DurationOrZero("max_age", &r->max_age));
    int max_entries = static_cast<int>(r->max_entries);
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "max_entries", 0, 2000000000, &max_entries));
    r->max_entries = max_entries;
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "batch", 1, 100000, &r->batch));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("interval", &r->interval));
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
  absl::Status ParseRuntimeSecretEnv(
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

  absl::Status ParseWebhook(const YAML::Node& node, const std::string& path,
                            const DocTypeRegistry& registry,
                            WebhookConfig* w) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(m.Open(
        node, {"name", "doctype", "doc_event", "enabled", "condition",
               "request_url", "request_method", "headers", "request_structure",
               "webhook_data", "webhook_json", "timeout", "enable_security",
               "secret_env", "secret_file", "webhook_secret"}));
    if (m.Has("webhook_secret")) {
      return errors_.At(m.PathOf("webhook_secret"),
                        "secrets are never inline; use secret_env or "
                        "secret_file");
    }
    ES_CONFIG_RETURN_IF_ERROR(m.String("name", &w->name, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("doctype", &w->doctype, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("doc_event", &w->doc_event, true));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("enabled", &w->enabled));
    ES_CONFIG_RETURN_IF_ERROR(m.String("condition", &w->condition));
    ES_CONFIG_RETURN_IF_ERROR(m.String("request_url", &w->request_url, true));
    ES_CONFIG_RETURN_IF_ERROR(m.Enum<std::string>(
        "request_method",
        {{"POST", "POST"}, {"PUT", "PUT"}, {"PATCH", "PATCH"},
         {"DELETE", "DELETE"}},
        &w->request_method));
    ES_CONFIG_RETURN_IF_ERROR(m.List(
        "headers", &w->headers,
        [&](const YAML::Node& n, const std::string& p, WebhookHeaderConfig* h) {
          MapReader hm(errors_, p);
          ES_CONFIG_RETURN_IF_ERROR(
              hm.Open(n, {"key", "value", "value_env", "value_file"}));
          ES_CONFIG_RETURN_IF_ERROR(hm.String("key", &h->key, true));
          ES_CONFIG_RETURN_IF_ERROR(hm.String("value", &h->value));
          int set = (hm.Has("value") ? 1 : 0) + (hm.Has("value_env") ? 1 : 0) +
                    (hm.Has("value_file") ? 1 : 0);
          if (set != 1) {
            return errors_.At(p, "expected exactly one of value, value_env "
                                 "and value_file");
          }
          if (!hm.Has("value")) {
            ES_CONFIG_RETURN_IF_ERROR(
                ParseSecretRef(hm, "value_env", "value_file", &h->secret));
          }
          return absl::OkStatus();
        }));
    ES_CONFIG_RETURN_IF_ERROR(m.Enum<std::string>(
        "request_structure", {{"Form", "Form"}, {"JSON", "JSON"}},
        &w->request_structure));
    ES_CONFIG_RETURN_IF_ERROR(m.List(
        "webhook_data", &w->webhook_data,
        [&](const YAML::Node& n, const std::string& p, WebhookFieldConfig* f) {
          MapReader fm(errors_, p);
          ES_CONFIG_RETURN_IF_ERROR(fm.Open(n, {"fieldname", "key"}));
          ES_CONFIG_RETURN_IF_ERROR(fm.String("fieldname", &f->fieldname, true));
          return fm.String("key", &f->key);
        }));
    ES_CONFIG_RETURN_IF_ERROR(m.String("webhook_json", &w->webhook_json));
    ES_CONFIG_RETURN_IF_ERROR(m.Duration("timeout", &w->timeout));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("enable_security", &w->enable_security));
    if (w->enable_security) {
      ES_CONFIG_RETURN_IF_ERROR(
          ParseSecretRef(m, "secret_env", "secret_file", &w->secret));
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

  absl::Status ParseProducer(const YAML::Node& node,
                             const DocTypeRegistry& registry,
                             ProducerConfig* producer) {
    MapReader m(errors_, "producer");
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"listen", "metrics_listen", "tls", "notify_tls", "api_keys",
                      "consumers", "condition_functions", "webhooks", "webhook_delivery",
                      "database_pool", "max_concurrent_calls_per_key", "retention",
                      "capture", "wal_slot", "wal_publication"}));
    ES_CONFIG_RETURN_IF_ERROR(m.Enum<CaptureMode>(
        "capture", {{"trigger", CaptureMode::kTrigger}, {"wal", CaptureMode::kWal}},
        &producer->capture));
    for (auto [key, out] : {std::pair{"wal_slot", &producer->wal_slot},
                            std::pair{"wal_publication", &producer->wal_publication}}) {
      std::string name;
      ES_CONFIG_RETURN_IF_ERROR(m.String(key, &name));
      if (name.empty()) continue;  // `key: ""` keeps the default
      if (!wal::ValidSlotName(name)) {
        return errors_.At(m.PathOf(key), "expected 1-63 of a-z, 0-9, '_'");
      }
      *out = name;
    }
    ES_CONFIG_RETURN_IF_ERROR(m.Address("listen", &producer->listen));
    if (producer->listen.empty()) producer->listen = "0.0.0.0:50051";
    ES_CONFIG_RETURN_IF_ERROR(
        m.Address("metrics_listen", &producer->metrics_listen));
    {
      MapReader pm(errors_, "producer.database_pool");
      ES_CONFIG_RETURN_IF_ERROR(
          pm.Open(m.Get("database_pool"), {"max_connections", "acquire_timeout"}));
      ES_CONFIG_RETURN_IF_ERROR(Int(pm, "max_connections", 1, 1000,
                                    &producer->database_pool.max_connections));
      ES_CONFIG_RETURN_IF_ERROR(
          pm.Duration("acquire_timeout", &producer->database_pool.acquire_timeout));
    }
    ES_CONFIG_RETURN_IF_ERROR(Int(m, "max_concurrent_calls_per_key", 1, 1000,
                                  &producer->max_concurrent_calls_per_key));
    if (m.Has("tls")) {
      ES_CONFIG_RETURN_IF_ERROR(ParseTlsServer(
          m.Get("tls"), m.PathOf("tls"), &producer->tls.emplace()));
    }
    if (m.Has("notify_tls")) {
      ES_CONFIG_RETURN_IF_ERROR(ParseTlsClient(m.Get("notify_tls"),
                                               m.PathOf("notify_tls"),
                                               &producer->notify_tls.emplace()));
    }
    ES_CONFIG_RETURN_IF_ERROR(ParseApiKeys(m, false, &producer->api_keys));
    ES_CONFIG_RETURN_IF_ERROR(m.List(
        "condition_functions", &producer->condition_functions,
        [&](const YAML::Node& n, const std::string& p, std::string* f) {
          if (!n.IsScalar()) return errors_.At(p, "expected a string");
          *f = n.Scalar();
          auto parsed = ParseConditionFunction(absl::StrCat("cmd:", *f));
          if (!parsed.ok()) {
            return errors_.At(p, "expected schema.function (a PostgreSQL function)");
          }
          *f = (*parsed)->Name();
          return absl::OkStatus();
        }));

    ES_CONFIG_RETURN_IF_ERROR(m.List(
        "consumers", &producer->consumers,
        [&](const YAML::Node& n, const std::string& p, ConsumerSiteConfig* c) {
          MapReader cm(errors_, p);
          ES_CONFIG_RETURN_IF_ERROR(cm.Open(n, {"site", "doctypes"}));
          ES_CONFIG_RETURN_IF_ERROR(cm.String("site", &c->site, true));
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
                ES_CONFIG_RETURN_IF_ERROR(
                    dm.Open(dn, {"doctype", "status", "condition"}));
                ES_CONFIG_RETURN_IF_ERROR(
                    dm.String("doctype", &d->doctype, true));
                ES_CONFIG_RETURN_IF_ERROR(CheckSubscribable(
                    dm.PathOf("doctype"), registry, d->doctype));
                ES_CONFIG_RETURN_IF_ERROR(dm.Enum<SubscriptionStatus>(
                    "status",
                    {{"approved", SubscriptionStatus::kApproved},
                     {"pending", SubscriptionStatus::kPending},
                     {"rejected", SubscriptionStatus::kRejected}},
                    &d->status));
                ES_CONFIG_RETURN_IF_ERROR(
                    dm.String("condition", &d->condition));
                return CheckCondition(dm.PathOf("condition"), d->condition);
              });
        }));

    ES_CONFIG_RETURN_IF_ERROR(m.List(
        "webhooks", &producer->webhooks,
        [&](const YAML::Node& n, const std::string& p, WebhookConfig* w) {
          return ParseWebhook(n, p, registry, w);
        }));
    std::map<std::string, size_t> webhook_names;
    for (size_t i = 0; i < producer->webhooks.size(); ++i) {
      auto [it, inserted] =
          webhook_names.emplace(producer->webhooks[i].name, i);
      if (!inserted) {
        return errors_.At(
            ChildPath(IndexPath("producer.webhooks", i), "name"),
            absl::StrCat("duplicate webhook ",
                         Quote(producer->webhooks[i].name), " (also webhooks[",
                         it->second, "])"));
      }
    }
    std::vector<std::string> own_secret_env = {"ES_DATABASE_URL"};
    for (const ApiKeyConfig& k : producer->api_keys) {
      if (!k.secret.env.empty()) own_secret_env.push_back(k.secret.env);
    }
    ES_CONFIG_RETURN_IF_ERROR(ParseWebhookDelivery(
        m.Get("webhook_delivery"), own_secret_env,
        &producer->webhook_delivery));
    ES_CONFIG_RETURN_IF_ERROR(ParseRetention(m.Get("retention"), &producer->retention));

    std::map<std::string, size_t> sites;
    for (size_t i = 0; i < producer->consumers.size(); ++i) {
      const ConsumerSiteConfig& c = producer->consumers[i];
      std::string path = IndexPath("producer.consumers", i);
      auto [it, inserted] = sites.emplace(c.site, i);
      if (!inserted) {
        return errors_.At(
            ChildPath(path, "site"),
            absl::StrCat("duplicate consumer site ", Quote(c.site),
                         " (also consumers[", it->second, "])"));
      }
      std::map<std::string, size_t> doctypes;
      for (size_t j = 0; j < c.doctypes.size(); ++j) {
        auto [dit, dinserted] = doctypes.emplace(c.doctypes[j].doctype, j);
        if (!dinserted) {
          return errors_.At(
              ChildPath(IndexPath(ChildPath(path, "doctypes"), j), "doctype"),
              absl::StrCat("duplicate DocType ", Quote(c.doctypes[j].doctype),
                           " (also doctypes[", dit->second, "])"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseFieldMapping(const YAML::Node& node,
                                 const std::string& path, FieldMapping* f) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"remote_fieldname", "local_fieldname", "mapping_type",
                      "mapping", "default_value", "remote_value_filters"}));
    ES_CONFIG_RETURN_IF_ERROR(
        m.String("remote_fieldname", &f->remote_fieldname, true));
    ES_CONFIG_RETURN_IF_ERROR(
        m.String("local_fieldname", &f->local_fieldname, true));
    ES_CONFIG_RETURN_IF_ERROR(m.Enum<std::string>(
        "mapping_type",
        {{"Child Table", "Child Table"}, {"Document", "Document"}},
        &f->mapping_type));
    ES_CONFIG_RETURN_IF_ERROR(m.String("mapping", &f->mapping));
    ES_CONFIG_RETURN_IF_ERROR(m.String("default_value", &f->default_value));
    if (f->mapping_type.empty() && !f->mapping.empty()) {
      return errors_.At(m.PathOf("mapping"),
                        "only used with mapping_type Child Table or "
                        "Document");
    }
    if (!f->mapping_type.empty() && f->mapping.empty()) {
      return errors_.At(
          m.PathOf("mapping"),
          absl::StrCat("required with mapping_type ", f->mapping_type));
    }
    if (f->mapping_type == "Child Table" && !f->default_value.empty()) {
      return errors_.At(m.PathOf("default_value"),
                        "not used with mapping_type Child Table (rows come "
                        "from the remote table or not at all)");
    }
    YAML::Node filters = m.Get("remote_value_filters");
    if (!Present(filters)) {
      if (f->mapping_type == "Document") {
        return errors_.At(m.PathOf("remote_value_filters"),
                          absl::StrCat("required with mapping_type Document: "
                                       "{field: value} selecting the remote "
                                       "document, e.g. {name: doc.",
                                       f->remote_fieldname, "}"));
      }
      return absl::OkStatus();
    }
    if (f->mapping_type != "Document") {
      return errors_.At(m.PathOf("remote_value_filters"),
                        "only used with mapping_type Document");
    }
    if (!filters.IsMap() || filters.size() == 0) {
      return errors_.At(m.PathOf("remote_value_filters"),
                        "expected a non-empty mapping of remote field to "
                        "value");
    }
    // The same rules MappingSet::Create applies (RemoteValueFilter::Parse:
    // "eval:" expressions must parse), reported at the key.
    for (const auto& entry : filters) {
      const std::string key = entry.first.Scalar();
      std::string path = ChildPath(m.PathOf("remote_value_filters"), key);
      if (Present(entry.second) && !entry.second.IsScalar()) {
        return errors_.At(path,
                          "expected a value, a field name, doc.<field> or "
                          "eval:<expression>");
      }
      absl::StatusOr<RemoteValueFilter> parsed =
          RemoteValueFilter::Parse(key, YamlToValue(entry.second));
      if (!parsed.ok()) {
        absl::string_view message = parsed.status().message();
        absl::ConsumePrefix(&message,
                            absl::StrCat("remote_value_filters.", key, ": "));
        return errors_.At(path, message);
      }
    }
    f->remote_value_filters = YamlToValue(filters);
    return absl::OkStatus();
  }

  absl::Status ParseMapping(const YAML::Node& node, const std::string& path,
                            DocTypeMapping* mapping) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(m.Open(
        node, {"name", "local_doctype", "remote_doctype", "field_mapping"}));
    ES_CONFIG_RETURN_IF_ERROR(m.String("name", &mapping->name, true));
    ES_CONFIG_RETURN_IF_ERROR(
        m.String("local_doctype", &mapping->local_doctype, true));
    ES_CONFIG_RETURN_IF_ERROR(
        m.String("remote_doctype", &mapping->remote_doctype, true));
    ES_CONFIG_RETURN_IF_ERROR(m.Required("field_mapping"));
    ES_CONFIG_RETURN_IF_ERROR(
        m.List("field_mapping", &mapping->field_mapping,
               [this](const YAML::Node& n, const std::string& p,
                      FieldMapping* f) { return ParseFieldMapping(n, p, f); }));
    if (mapping->field_mapping.empty()) {
      // Fields without a rule are dropped, so an empty mapping would
      // replicate empty documents.
      return errors_.At(m.PathOf("field_mapping"),
                        "required (at least one field)");
    }
    return absl::OkStatus();
  }

  // Cross-checks mappings against the registry and each other, once all of
  // them are read (a field mapping may name a mapping declared later).
  absl::Status CheckMappings(const DocTypeRegistry& registry,
                             const ConsumerConfig& consumer) {
    std::map<std::string, size_t> names;
    for (size_t i = 0; i < consumer.mappings.size(); ++i) {
      const DocTypeMapping& mapping = consumer.mappings[i];
      std::string path = IndexPath("consumer.mappings", i);
      auto [it, inserted] = names.emplace(mapping.name, i);
      if (!inserted) {
        return errors_.At(
            ChildPath(path, "name"),
            absl::StrCat("duplicate mapping ", Quote(mapping.name),
                         " (also mappings[", it->second, "])"));
      }
    }
    for (size_t i = 0; i < consumer.mappings.size(); ++i) {
      const DocTypeMapping& mapping = consumer.mappings[i];
      std::string path = IndexPath("consumer.mappings", i);
      const DocTypeDef* local = registry.Find(mapping.local_doctype);
      if (local == nullptr) {
        return errors_.At(
            ChildPath(path, "local_doctype"),
            absl::StrCat("unknown DocType ", Quote(mapping.local_doctype),
                         " (add it under doctypes:)"));
      }
      std::map<std::string, size_t> written;
      for (size_t j = 0; j < mapping.field_mapping.size(); ++j) {
        const FieldMapping& f = mapping.field_mapping[j];
        std::string fpath = IndexPath(ChildPath(path, "field_mapping"), j);
        auto [wit, winserted] = written.emplace(f.local_fieldname, j);
        if (!winserted) {
          return errors_.At(ChildPath(fpath, "local_fieldname"),
                            absl::StrCat(Quote(f.local_fieldname),
                                         " is already written by "
                                         "field_mapping[",
                                         wit->second, "]"));
        }
        const FieldDef* field = local->FindField(f.local_fieldname);
        if (field == nullptr &&
            !IsStandardColumn(f.local_fieldname, local->istable)) {
          return errors_.At(
              ChildPath(fpath, "local_fieldname"),
              absl::StrCat(Quote(f.local_fieldname),
                           " is not a field of DocType ", Quote(local->name)));
        }
        if (f.mapping_type.empty()) continue;
        const DocTypeMapping* inner = consumer.FindMapping(f.mapping);
        if (inner == nullptr) {
          return errors_.At(ChildPath(fpath, "mapping"),
                            absl::StrCat("unknown mapping ", Quote(f.mapping),
                                         " (expected the name of one of "
                                         "consumer.mappings)"));
        }
        // The inner mapping must produce what the local field holds: the
        // Table's child DocType, or the Link's target DocType.
        if (f.mapping_type == "Child Table") {
          if (field == nullptr || !field->is_table()) {
            return errors_.At(ChildPath(fpath, "local_fieldname"),
                              absl::StrCat(Quote(f.local_fieldname),
                                           " is not a Table field (required "
                                           "by mapping_type Child Table)"));
          }
          if (inner->local_doctype != field->options) {
            return errors_.At(
                ChildPath(fpath, "mapping"),
                absl::StrCat("mapping ", Quote(f.mapping), " produces ",
                             Quote(inner->local_doctype), " but field ",
                             Quote(f.local_fieldname), " holds ",
                             Quote(field->options)));
          }
        } else {  // Document
          if (field == nullptr ||
              (!field->is_link() && !field->is_dynamic_link())) {
            return errors_.At(ChildPath(fpath, "local_fieldname"),
                              absl::StrCat(Quote(f.local_fieldname),
                                           " is not a Link field (required "
                                           "by mapping_type Document)"));
          }
          if (field->is_link() && inner->local_doctype != field->options) {
            return errors_.At(
                ChildPath(fpath, "mapping"),
                absl::StrCat("mapping ", Quote(f.mapping), " produces ",
                             Quote(inner->local_doctype), " but field ",
                             Quote(f.local_fieldname), " links to ",
                             Quote(field->options)));
          }
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseProducerDocType(const YAML::Node& node,
                                    const std::string& path,
                                    ProducerDocTypeConfig* d) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(m.Open(
        node,
        {"doctype", "use_same_name", "condition", "mapping", "unsubscribe",
         "on_move_out", "initial_sync"}));
    ES_CONFIG_RETURN_IF_ERROR(m.String("doctype", &d->doctype, true));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("use_same_name", &d->use_same_name));
    ES_CONFIG_RETURN_IF_ERROR(m.String("condition", &d->condition));
    ES_CONFIG_RETURN_IF_ERROR(
        CheckCondition(m.PathOf("condition"), d->condition));
    ES_CONFIG_RETURN_IF_ERROR(m.String("mapping", &d->mapping));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("unsubscribe", &d->unsubscribe));
    ES_CONFIG_RETURN_IF_ERROR(m.Bool("initial_sync", &d->initial_sync));
    using MoveOut = ProducerDocTypeConfig::MoveOut;
    return m.Enum<MoveOut>(
        "on_move_out", {{"delete", MoveOut::kDelete}, {"keep", MoveOut::kKeep}},
        &d->on_move_out);
  }

  absl::Status ParseEventProducer(const YAML::Node& node,
                                  const std::string& path,
                                  EventProducerConfig* p) {
    MapReader m(errors_, path);
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"name", "url", "api_key", "api_secret_env",
                      "api_secret_file", "tls", "doctypes"}));
    ES_CONFIG_RETURN_IF_ERROR(m.String("name", &p->name, true));
    ES_CONFIG_RETURN_IF_ERROR(m.String("url", &p->url, true));
    // Frappe users will paste their producer's site URL; say what we need.
    if (absl::StartsWith(p->url, "http://") ||
        absl::StartsWith(p->url, "https://") ||
        p->url.find_first_of(" \t") != std::string::npos) {
      return errors_.At(m.PathOf("url"),
                        "expected the producer's gRPC address host:port "
                        "(not an http URL)");
    }
    ES_CONFIG_RETURN_IF_ERROR(m.String("api_key", &p->api_key, true));
    ES_CONFIG_RETURN_IF_ERROR(
        ParseSecretRef(m, "api_secret_env", "api_secret_file", &p->api_secret));
    if (m.Has("tls")) {
      ES_CONFIG_RETURN_IF_ERROR(
          ParseTlsClient(m.Get("tls"), m.PathOf("tls"), &p->tls.emplace()));
    }
    return m.List("doctypes", &p->doctypes,
                  [this](const YAML::Node& n, const std::string& dp,
                         ProducerDocTypeConfig* d) {
                    return ParseProducerDocType(n, dp, d);
                  });
  }

  absl::Status CheckProducers(const DocTypeRegistry& registry,
                              const ConsumerConfig& consumer) {
    std::map<std::string, size_t> names;
    for (size_t i = 0; i < consumer.producers.size(); ++i) {
      const EventProducerConfig& p = consumer.producers[i];
      std::string path = IndexPath("consumer.producers", i);
      auto [it, inserted] = names.emplace(p.name, i);
      if (!inserted) {
        return errors_.At(ChildPath(path, "name"),
                          absl::StrCat("duplicate producer ", Quote(p.name),
                                       " (also producers[", it->second, "])"));
      }
      // Rows are keyed by the producer's DocType (as Frappe's Event
      // Producer Document Type is): two mappings may feed one local DocType
      // from two remote ones, but one remote DocType is subscribed once.
      std::map<std::string, size_t> remote;
      for (size_t j = 0; j < p.doctypes.size(); ++j) {
        const ProducerDocTypeConfig& d = p.doctypes[j];
        std::string dpath = IndexPath(ChildPath(path, "doctypes"), j);
        std::string remote_doctype = d.doctype;
        if (d.mapping.empty()) {
          ES_CONFIG_RETURN_IF_ERROR(CheckSubscribable(
              ChildPath(dpath, "doctype"), registry, d.doctype));
        } else {
          const DocTypeMapping* mapping = consumer.FindMapping(d.mapping);
          if (mapping == nullptr) {
            return errors_.At(ChildPath(dpath, "mapping"),
                              absl::StrCat("unknown mapping ", Quote(d.mapping),
                                           " (expected the name of one of "
                                           "consumer.mappings)"));
          }
          if (mapping->local_doctype != d.doctype) {
            return errors_.At(
                ChildPath(dpath, "doctype"),
                absl::StrCat("expected ", Quote(mapping->local_doctype),
                             ", the local_doctype of mapping ",
                             Quote(d.mapping)));
          }
          ES_CONFIG_RETURN_IF_ERROR(CheckSubscribable(
              ChildPath(dpath, "doctype"), registry, d.doctype));
          remote_doctype = mapping->remote_doctype;
        }
        auto [rit, rinserted] = remote.emplace(remote_doctype, j);
        if (!rinserted) {
          return errors_.At(
              ChildPath(dpath, "doctype"),
              absl::StrCat("the producer's DocType ", Quote(remote_doctype),
                           " is already subscribed by "
                           "doctypes[",
                           rit->second, "]"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::Status ParseConsumer(const YAML::Node& node,
                             const DocTypeRegistry& registry,
                             ConsumerConfig* consumer) {
    MapReader m(errors_, "consumer");
    ES_CONFIG_RETURN_IF_ERROR(
        m.Open(node, {"listen", "advertise", "metrics_listen", "tls", "api_keys",
                      "poll_interval", "max_message_mb", "sync_log_retention", "producers",
                      "mappings"}));
    ES_CONFIG_RETURN_IF_ERROR(m.Address("listen", &consumer->listen));
    if (consumer->listen.empty()) consumer->listen = "0.0.0.0:50052";
    ES_CONFIG_RETURN_IF_ERROR(m.Address("advertise", &consumer->advertise));
    ES_CONFIG_RETURN_IF_ERROR(
        m.Address("metrics_listen", &consumer->metrics_listen));
    if (m.Has("tls")) {
      ES_CONFIG_RETURN_IF_ERROR(ParseTlsServer(
          m.Get("tls"), m.PathOf("tls"), &consumer->tls.emplace()));
    }
    ES_CONFIG_RETURN_IF_ERROR(ParseApiKeys(m, true, &consumer->api_keys));
    ES_CONFIG_RETURN_IF_ERROR(
        m.Duration("poll_interval", &consumer->poll_interval));
    ES_CONFIG_RETURN_IF_ERROR(
        Int(m, "max_message_mb", 4, 1024, &consumer->max_message_mb));
    // 0: kept for ever.
    ES_CONFIG_RETURN_IF_ERROR(
        m.DurationOrZero("sync_log_retention", &consumer->sync_log_retention));
    ES_CONFIG_RETURN_IF_ERROR(
        m.List("producers", &consumer->producers,
               [this](const YAML::Node& n, const std::string& p,
                      EventProducerConfig* e) {
                 return ParseEventProducer(n, p, e);
               }));
    ES_CONFIG_RETURN_IF_ERROR(
        m.List("mappings", &consumer->mappings,
               [this](const YAML::Node& n, const std::string& p,
                      DocTypeMapping* d) { return ParseMapping(n, p, d); }));
    ES_CONFIG_RETURN_IF_ERROR(CheckMappings(registry, *consumer));
    // The consumer builds a MappingSet from these; whatever it would refuse
    // must fail here, before the service starts. The checks above report
    // the known cases at their key; this catches any rule added there later.
    absl::StatusOr<MappingSet> set = MappingSet::Create(consumer->mappings);
    if (!set.ok()) {
      return errors_.At("consumer.mappings", set.status().message());
    }
    return CheckProducers(registry, *consumer);
  }

  Errors errors_;
};

}  // namespace

// ---- lookups ---------------------------------------------------------------

const std::vector<std::string>& Config::condition_functions() const {
  static const std::vector<std::string> kNone;
  return producer ? producer->condition_functions : kNone;
}

const ApiKeyConfig* ProducerConfig::FindApiKey(std::string_view key) const {
  for (const ApiKeyConfig& k : api_keys) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

const ConsumerSiteConfig* ProducerConfig::FindConsumer(
    std::string_view site) const {
  for (const ConsumerSiteConfig& c : consumers) {
    if (c.site == site) return &c;
  }
  return nullptr;
}

const ApiKeyConfig* ConsumerConfig::FindApiKey(std::string_view key) const {
  for (const ApiKeyConfig& k : api_keys) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

const EventProducerConfig* ConsumerConfig::FindProducer(
    std::string_view name) const {
  for (const EventProducerConfig& p : producers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

const DocTypeMapping* ConsumerConfig::FindMapping(std::string_view name) const {
  for (const DocTypeMapping& m : mappings) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

std::string_view ToString(SubscriptionStatus status) {
  switch (status) {
    case SubscriptionStatus::kPending:
      return "pending";
    case SubscriptionStatus::kApproved:
      return "approved";
    case SubscriptionStatus::kRejected:
      return "rejected";
  }
  return "unknown";
}

std::string_view ToString(ApiKeyRole role) {
  switch (role) {
    case ApiKeyRole::kConsumer:
      return "consumer";
    case ApiKeyRole::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool IsLoopbackAddress(std::string_view address_sv) {
  absl::string_view a(address_sv.data(), address_sv.size());
  if (absl::StartsWith(a, "unix:") || absl::StartsWith(a, "unix-abstract:")) {
    return true;
  }
  // gRPC target schemes that name an address directly.
  absl::ConsumePrefix(&a, "dns:///");
  absl::ConsumePrefix(&a, "ipv4:");
  absl::ConsumePrefix(&a, "ipv6:");
  absl::string_view host = a;
  if (absl::ConsumePrefix(&host, "[")) {  // [v6]:port
    host = host.substr(0, host.find(']'));
  } else if (size_t colon = host.rfind(':');
             colon != absl::string_view::npos &&
             host.find(':') == colon) {  // host:port (not a bare v6)
    host = host.substr(0, colon);
  }
  if (absl::EqualsIgnoreCase(host, "localhost") || host == "::1") return true;
  // 127.0.0.0/8: four decimal octets, the first 127.
  std::vector<absl::string_view> octets = absl::StrSplit(host, '.');
  if (octets.size() != 4 || octets[0] != "127") return false;
  for (absl::string_view o : octets) {
    int v = 0;
    if (o.empty() || o.size() > 3 || !absl::SimpleAtoi(o, &v) || v > 255) {
      return false;
    }
  }
  return true;
}

// ---- loading
// -----------------------------------------------------------------

absl::StatusOr<Config> ParseConfig(std::string_view yaml_text,
                                   std::string_view filename_sv) {
  const absl::string_view filename(filename_sv.data(), filename_sv.size());
  // yaml-cpp reports everything by exception; none may leave this function.
  try {
    std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml_text));
    if (docs.size() > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          filename, ": expected one YAML document, found ", docs.size()));
    }
    return Parser(filename).Parse(docs.empty() ? YAML::Node() : docs[0]);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename, ": invalid YAML: ", e.msg));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(filename, ":", e.mark.line + 1, ":", e.mark.column + 1,
                     ": invalid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat(filename, ": cannot load config: ", e.what()));
  }
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": cannot read the config file: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot read the config file"));
  }
  return ParseConfig(text.str(), path);
}

EnvLookup ProcessEnvironment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::Status ApplyEnvironment(Config& config, const EnvLookup& env) {
  std::optional<std::string> url = env("ES_DATABASE_URL");
  if (url.has_value() && !url->empty()) config.database.url = *url;
  if (config.database.url.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        config.source,
        ": database.url: required (set it in the config or set the "
        "environment variable ES_DATABASE_URL)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ResolveSecret(const SecretRef& ref,
                                          const EnvLookup& env) {
  if (!ref.env.empty()) {
    std::optional<std::string> value = env(ref.env);
    if (!value.has_value() || value->empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(ref.origin, ": environment variable ", ref.env,
                       " is not set or empty"));
    }
    return *std::move(value);
  }
  if (ref.file.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(ref.origin, ": no secret_env or secret_file is set"));
  }
  // Missing, unreadable (no permission, a directory) and empty all get the
  // same message: a message must not tell whether a path exists.
  const absl::Status unusable = absl::FailedPreconditionError(
      absl::StrCat(ref.origin, ": secret file ", ref.file,
                   " is missing, unreadable or empty"));
  std::ifstream in(ref.file, std::ios::binary);
  if (!in) return unusable;
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  // Files written by editors, `echo` or `--from-file` end in a newline that
  // is not part of the secret.
  if (absl::EndsWith(secret, "\n")) secret.pop_back();
  if (absl::EndsWith(secret, "\r")) secret.pop_back();
  if (secret.empty()) return unusable;
  return secret;
}

}  // namespace eventstream

#undef ES_CONFIG_RETURN_IF_ERROR
