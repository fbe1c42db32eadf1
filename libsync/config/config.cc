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
#include "libsync/config/subscription_condition.h"
#include "yaml-cpp/yaml.h"

// Internally this file uses absl::string_view: Debian's Abseil is built with
// its own string_view type, which StrCat/StrSplit need; the public API keeps
// std::string_view.

namespace eventstream {
namespace config_internal {

// ---- top level and the sections both sides use ---------------------------

absl::StatusOr<Config> Parser::Parse(const YAML::Node& root) {
  Config config;
  config.source = errors_.filename();
  if (!root.IsDefined() || root.IsNull() || !root.IsMap()) {
    return errors_.At("",
                      "expected a mapping with keys site, database, log, "
                      "doctypes, producer, consumer");
  }
  MapReader top(errors_, "");
  RETURN_IF_ERROR(top.Open(
      root, {"site", "database", "log", "doctypes", "producer", "consumer"}));

  RETURN_IF_ERROR(top.Required("site"));
  MapReader site(errors_, "site");
  RETURN_IF_ERROR(site.Open(top.Get("site"), {"name"}));
  RETURN_IF_ERROR(site.String("name", &config.site.name, true));
  if (!IsPlainName(config.site.name)) {
    return errors_.At("site.name",
                      "expected a site name (letters, digits, "
                      "'.', '_', '-')");
  }

  MapReader database(errors_, "database");
  RETURN_IF_ERROR(database.Open(top.Get("database"), {"url"}));
  RETURN_IF_ERROR(database.String("url", &config.database.url));

  MapReader log(errors_, "log");
  RETURN_IF_ERROR(log.Open(top.Get("log"), {"level", "format"}));
  RETURN_IF_ERROR(log.Enum<std::string>("level",
                                        {{"debug", "debug"},
                                         {"info", "info"},
                                         {"warn", "warn"},
                                         {"error", "error"}},
                                        &config.log.level));
  RETURN_IF_ERROR(log.Enum<LogFormat>(
      "format", {{"text", LogFormat::kText}, {"json", LogFormat::kJson}},
      &config.log.format));

  std::vector<DocTypeDef> defs;
  RETURN_IF_ERROR(
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
    RETURN_IF_ERROR(
        ParseProducer(top.Get("producer"), config.registry, &*config.producer));
  }
  if (top.Has("consumer")) {
    config.consumer.emplace();
    RETURN_IF_ERROR(
        ParseConsumer(top.Get("consumer"), config.registry, &*config.consumer));
  }
  return config;
}

absl::Status Parser::ParseDocType(const YAML::Node& node,
                                  const std::string& path, DocTypeDef* def) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(node, {"name", "table", "autoname", "istable",
                                "is_submittable", "fields"}));
  RETURN_IF_ERROR(m.String("name", &def->name, true));
  RETURN_IF_ERROR(m.String("table", &def->table));
  RETURN_IF_ERROR(m.String("autoname", &def->autoname));
  if (def->autoname.empty()) def->autoname = "hash";
  RETURN_IF_ERROR(m.Bool("istable", &def->istable));
  RETURN_IF_ERROR(m.Bool("is_submittable", &def->is_submittable));
  return m.List("fields", &def->fields,
                [this](const YAML::Node& n, const std::string& p,
                       FieldDef* f) { return ParseField(n, p, f); });
}

absl::Status Parser::ParseField(const YAML::Node& node, const std::string& path,
                                FieldDef* field) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(
      m.Open(node, {"fieldname", "fieldtype", "options", "reqd", "default"}));
  RETURN_IF_ERROR(m.String("fieldname", &field->fieldname, true));
  RETURN_IF_ERROR(m.String("fieldtype", &field->fieldtype, true));
  RETURN_IF_ERROR(m.String("options", &field->options));
  RETURN_IF_ERROR(m.Bool("reqd", &field->reqd));
  if (m.Has("default")) {
    std::string value;
    RETURN_IF_ERROR(m.String("default", &value));
    field->default_value = std::move(value);
  }
  return absl::OkStatus();
}

// Reads the secret reference of an API key (`env_key`/`file_key` are
// secret_env/secret_file or api_secret_env/api_secret_file).
absl::Status Parser::ParseSecretRef(const MapReader& m,
                                    absl::string_view env_key,
                                    absl::string_view file_key,
                                    SecretRef* ref) {
  RETURN_IF_ERROR(m.String(env_key, &ref->env));
  RETURN_IF_ERROR(m.String(file_key, &ref->file));
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
absl::Status Parser::ParseApiKeys(const MapReader& section, bool admin_only,
                                  std::vector<ApiKeyConfig>* keys) {
  RETURN_IF_ERROR(section.List(
      "api_keys", keys,
      [&](const YAML::Node& n, const std::string& p, ApiKeyConfig* k) {
        MapReader m(errors_, p);
        RETURN_IF_ERROR(
            m.Open(n, {"key", "secret_env", "secret_file", "role"}));
        RETURN_IF_ERROR(m.String("key", &k->key, true));
        if (!IsPlainName(k->key)) {
          return errors_.At(m.PathOf("key"),
                            "expected a key id of letters, digits, '.', "
                            "'_', '-' (no ':')");
        }
        RETURN_IF_ERROR(
            ParseSecretRef(m, "secret_env", "secret_file", &k->secret));
        if (admin_only) {
          RETURN_IF_ERROR(m.Enum<ApiKeyRole>(
              "role", {{"admin", ApiKeyRole::kAdmin}}, &k->role, true));
        } else {
          RETURN_IF_ERROR(
              m.Enum<ApiKeyRole>("role",
                                 {{"consumer", ApiKeyRole::kConsumer},
                                  {"admin", ApiKeyRole::kAdmin}},
                                 &k->role, true));
        }
        return absl::OkStatus();
      }));
  return CheckUnique(errors_, *keys, &ApiKeyConfig::key,
                     section.PathOf("api_keys"), "key", "api key");
}

absl::Status Parser::CheckCondition(const std::string& path,
                                    const std::string& condition) {
  if (condition.empty()) return absl::OkStatus();
  std::string problem = ConditionProblem(condition);
  if (problem.empty()) return absl::OkStatus();
  return errors_.At(path, problem);
}

// A DocType a site subscribes to by name must be a top-level DocType of
// the registry: child rows travel inside their parent.
absl::Status Parser::CheckSubscribable(const std::string& path,
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
absl::Status Parser::Int(const MapReader& m, absl::string_view key, int lo,
                         int hi, int* out) {
  if (!m.Has(key)) return absl::OkStatus();
  std::string text;
  RETURN_IF_ERROR(m.String(key, &text));
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
absl::Status Parser::RefreshInterval(const MapReader& m, absl::Duration* out) {
  RETURN_IF_ERROR(m.Duration("refresh_interval", out));
  if (*out < absl::Seconds(1) || *out != absl::Trunc(*out, absl::Seconds(1))) {
    return errors_.At(m.PathOf("refresh_interval"),
                      "expected whole seconds, at least 1s (e.g. 60s)");
  }
  return absl::OkStatus();
}

// A path key of a tls section: any non-empty text without a newline.
absl::Status Parser::TlsPath(const MapReader& m, absl::string_view key,
                             std::string* out, bool required) {
  RETURN_IF_ERROR(m.String(key, out, required));
  if (out->find_first_of("\n\r") != std::string::npos) {
    return errors_.At(m.PathOf(key), "expected a file path");
  }
  return absl::OkStatus();
}

// producer.tls, consumer.tls: a server's certificate (and client CA).
absl::Status Parser::ParseTlsServer(const YAML::Node& node,
                                    const std::string& path,
                                    TlsServerConfig* tls) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(
      node, {"cert_file", "key_file", "client_ca_file", "refresh_interval"}));
  RETURN_IF_ERROR(TlsPath(m, "cert_file", &tls->cert_file, true));
  RETURN_IF_ERROR(TlsPath(m, "key_file", &tls->key_file, true));
  RETURN_IF_ERROR(TlsPath(m, "client_ca_file", &tls->client_ca_file, false));
  RETURN_IF_ERROR(RefreshInterval(m, &tls->refresh_interval));
  tls->origin = errors_.Origin(path);
  return absl::OkStatus();
}

// consumer.producers[].tls, producer.notify_tls: how a client channel
// verifies its server, and the certificate it presents.
absl::Status Parser::ParseTlsClient(const YAML::Node& node,
                                    const std::string& path,
                                    TlsClientConfig* tls) {
  MapReader m(errors_, path);
  RETURN_IF_ERROR(m.Open(node, {"ca_file", "server_name", "cert_file",
                                "key_file", "refresh_interval"}));
  RETURN_IF_ERROR(TlsPath(m, "ca_file", &tls->ca_file, false));
  RETURN_IF_ERROR(m.String("server_name", &tls->server_name));
  if (!tls->server_name.empty() &&
      (tls->server_name.find_first_of(" \t\r\n/") != std::string::npos ||
       tls->server_name.find("://") != std::string::npos)) {
    return errors_.At(m.PathOf("server_name"),
                      "expected a host name like hq-producer.example.com "
                      "(no port, no URL)");
  }
  RETURN_IF_ERROR(TlsPath(m, "cert_file", &tls->cert_file, false));
  RETURN_IF_ERROR(TlsPath(m, "key_file", &tls->key_file, false));
  if (tls->cert_file.empty() != tls->key_file.empty()) {
    return errors_.At(
        m.PathOf(tls->cert_file.empty() ? "cert_file" : "key_file"),
        absl::StrCat("required with ",
                     tls->cert_file.empty() ? "key_file" : "cert_file",
                     " (a client certificate needs both)"));
  }
  RETURN_IF_ERROR(RefreshInterval(m, &tls->refresh_interval));
  tls->origin = errors_.Origin(path);
  return absl::OkStatus();
}

}  // namespace config_internal

// ---- lookups ---------------------------------------------------------------

const std::vector<std::string>& Config::condition_functions() const {
  static const std::vector<std::string> kNone;
  return producer ? producer->condition_functions : kNone;
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
    return config_internal::Parser(filename).Parse(
        docs.empty() ? YAML::Node() : docs[0]);
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
