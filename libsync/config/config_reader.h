// Internal to the config loader (config.cc, config_producer.cc,
// config_consumer.cc): the error collector and the YAML map reader every
// section parser uses, the small path and name helpers, and the Parser whose
// methods those three files define. Not for other code: config.h is the
// contract.
#ifndef EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_READER_H_
#define EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_READER_H_

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "libsync/base/status_macros.h"
#include "libsync/base/value.h"
#include "libsync/config/config.h"
#include "yaml-cpp/yaml.h"

namespace eventstream::config_internal {

// A default-constructed YAML::Node is a (defined) null; a missing key and
// `key: null` / `key:` all mean "not set".
inline bool Present(const YAML::Node& node) {
  return node.IsDefined() && !node.IsNull();
}

inline std::string Quote(absl::string_view s) { return absl::StrCat("\"", s, "\""); }

inline std::string ChildPath(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

inline std::string IndexPath(absl::string_view path, size_t i) {
  return absl::StrCat(path, "[", i, "]");
}

inline bool IsIdentifier(absl::string_view s) {
  if (s.empty() || (!absl::ascii_isalpha(s[0]) && s[0] != '_')) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

// Site names and API key ids: they travel in `token KEY:SECRET`, in
// remote_site_name columns and in log lines, so keep them plain.
inline bool IsPlainName(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

// host:port (port 0-65535; host may be [v6]) or a unix: socket path, the
// forms gRPC servers and the metrics endpoint bind to. Port 0 lets a server
// pick a free port and log it (tests and ad-hoc runs use it).
inline bool IsListenAddress(absl::string_view s) {
  if (absl::StartsWith(s, "unix:")) return s.size() > 5;
  size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) return false;
  int port = 0;
  absl::string_view port_text = s.substr(colon + 1);
  if (port_text.empty() ||
      port_text.find_first_not_of("0123456789") != absl::string_view::npos) {
    return false;
  }
  if (!absl::SimpleAtoi(port_text, &port)) return false;
  for (char c : s) {
    if (absl::ascii_isspace(c)) return false;
  }
  return port >= 0 && port <= 65535;
}

// Keeps the file name so that every error can start with it.
class Errors {
 public:
  explicit Errors(absl::string_view filename) : filename_(filename) {}

  absl::Status At(absl::string_view path, absl::string_view message) const {
    if (path.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(filename_, ": ", message));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(filename_, ": ", path, ": ", message));
  }
  std::string Origin(absl::string_view path) const {
    return absl::StrCat(filename_, ": ", path);
  }
  const std::string& filename() const { return filename_; }

 private:
  std::string filename_;
};

// Reads one YAML mapping: checks the allowed keys once (unknown and repeated
// keys are errors), then hands out typed values by key, each error carrying
// the key's full path. A null node reads as an empty mapping.
class MapReader {
 public:
  MapReader(const Errors& errors, std::string path)
      : errors_(errors), path_(std::move(path)) {}

  absl::Status Open(const YAML::Node& node,
                    const std::vector<absl::string_view>& allowed) {
    if (!Present(node)) return absl::OkStatus();
    if (!node.IsMap()) {
      return errors_.At(path_, absl::StrCat("expected a mapping with keys: ",
                                            absl::StrJoin(allowed, ", ")));
    }
    for (const auto& entry : node) {
      if (!entry.first.IsScalar()) {
        return errors_.At(path_, "expected a mapping with string keys");
      }
      const std::string& key = entry.first.Scalar();
      bool known = false;
      for (absl::string_view a : allowed) known = known || a == key;
      if (!known) {
        return errors_.At(
            ChildPath(path_, key),
            absl::StrCat("unknown key ", Quote(key), " (expected one of: ",
                         absl::StrJoin(allowed, ", "), ")"));
      }
      // yaml-cpp keeps both entries of a repeated key; YAML forbids it and
      // silently taking one would hide a mistake.
      if (!values_.emplace(key, entry.second).second) {
        return errors_.At(ChildPath(path_, key),
                          absl::StrCat("duplicate key ", Quote(key)));
      }
    }
    return absl::OkStatus();
  }

  std::string PathOf(absl::string_view key) const {
    return ChildPath(path_, key);
  }
  const std::string& path() const { return path_; }

  // The value under `key`; check it with Present() (absent and null are
  // both "not set").
  YAML::Node Get(absl::string_view key) const {
    auto it = values_.find(key);
    if (it == values_.end()) return YAML::Node(YAML::NodeType::Undefined);
    return it->second;
  }
  bool Has(absl::string_view key) const { return Present(Get(key)); }

  absl::Status Required(absl::string_view key) const {
    if (Has(key)) return absl::OkStatus();
    return errors_.At(PathOf(key), "required");
  }

  // Any scalar reads as its text (so `name: 123` is the string "123").
  // An empty string counts as missing for a required key.
  absl::Status String(absl::string_view key, std::string* out,
                      bool required = false) const {
    YAML::Node node = Get(key);
    if (!Present(node)) {
      return required ? errors_.At(PathOf(key), "required") : absl::OkStatus();
    }
    if (!node.IsScalar()) return errors_.At(PathOf(key), "expected a string");
    *out = node.Scalar();
    if (required && out->empty()) return errors_.At(PathOf(key), "required");
    return absl::OkStatus();
  }

  // true/false in any case, or 1/0 as Frappe's Check fields are written.
  absl::Status Bool(absl::string_view key, bool* out) const {
    YAML::Node node = Get(key);
    if (!Present(node)) return absl::OkStatus();
    std::string text =
        node.IsScalar() ? absl::AsciiStrToLower(node.Scalar()) : "";
    if (text == "true" || text == "1") {
      *out = true;
    } else if (text == "false" || text == "0") {
      *out = false;
    } else {
      return errors_.At(PathOf(key), "expected true or false");
    }
    return absl::OkStatus();
  }

  // One of `choices` (case-insensitive); `*out` gets the matching value.
  template <typename T>
  absl::Status Enum(absl::string_view key,
                    const std::vector<std::pair<absl::string_view, T>>& choices,
                    T* out, bool required = false) const {
    std::string text;
    RETURN_IF_ERROR(String(key, &text, required));
    // `key: ""` (as templates render unset values) keeps the default.
    if (!Has(key) || text.empty()) return absl::OkStatus();
    std::vector<absl::string_view> names;
    for (const auto& [name, value] : choices) {
      if (absl::EqualsIgnoreCase(name, text)) {
        *out = value;
        return absl::OkStatus();
      }
      names.push_back(name);
    }
    return errors_.At(PathOf(key), absl::StrCat("expected one of ",
                                                absl::StrJoin(names, ", ")));
  }

  absl::Status Duration(absl::string_view key, absl::Duration* out) const {
    if (!Has(key)) return absl::OkStatus();
    std::string text;
    RETURN_IF_ERROR(String(key, &text));
    absl::Duration d;
    // absl accepts "0" and "inf"; neither is a usable interval.
    if (!absl::ParseDuration(text, &d) || d == absl::InfiniteDuration() ||
        text.find_first_not_of("0123456789.") == std::string::npos) {
      return errors_.At(PathOf(key), "expected a duration like 30s");
    }
    if (d <= absl::ZeroDuration()) {
      return errors_.At(PathOf(key), "expected a positive duration like 30s");
    }
    *out = d;
    return absl::OkStatus();
  }

  // A duration like Duration's, or 0 ("0", "0s") meaning none.
  absl::Status DurationOrZero(absl::string_view key, absl::Duration* out) const {
    if (!Has(key)) return absl::OkStatus();
    std::string text;
    RETURN_IF_ERROR(String(key, &text));
    absl::Duration d;
    if (text == "0" || (absl::ParseDuration(text, &d) && d == absl::ZeroDuration())) {
      *out = absl::ZeroDuration();
      return absl::OkStatus();
    }
    return Duration(key, out);
  }

  absl::Status Address(absl::string_view key, std::string* out) const {
    RETURN_IF_ERROR(String(key, out));
    if (!Has(key) || out->empty() || IsListenAddress(*out)) {
      return absl::OkStatus();
    }
    return errors_.At(PathOf(key),
                      "expected host:port like 0.0.0.0:50051 (or "
                      "unix:/path)");
  }

  // A sequence under `key`; `parse(item_node, item_path, &item)` reads each.
  template <typename T, typename ParseFn>
  absl::Status List(absl::string_view key, std::vector<T>* out,
                    ParseFn parse) const {
    YAML::Node node = Get(key);
    if (!Present(node)) return absl::OkStatus();
    if (!node.IsSequence()) {
      return errors_.At(PathOf(key), "expected a list");
    }
    out->clear();
    for (size_t i = 0; i < node.size(); ++i) {
      T item;
      RETURN_IF_ERROR(parse(node[i], IndexPath(PathOf(key), i), &item));
      out->push_back(std::move(item));
    }
    return absl::OkStatus();
  }

 private:
  const Errors& errors_;
  std::string path_;
  std::map<std::string, YAML::Node, std::less<>> values_;
};

// The first of `items` whose `field` repeats an earlier one's, reported at
// <list_path>[i].<key> as `duplicate <what> "X" (also <list>[j])`, <list>
// being the last part of list_path.
template <typename T>
absl::Status CheckUnique(const Errors& errors, const std::vector<T>& items,
                         std::string T::*field, const std::string& list_path,
                         absl::string_view key, absl::string_view what) {
  absl::string_view list = list_path;
  list = list.substr(list.rfind('.') + 1);
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < items.size(); ++i) {
    auto [it, inserted] = seen.emplace(items[i].*field, i);
    if (!inserted) {
      return errors.At(ChildPath(IndexPath(list_path, i), key),
                       absl::StrCat("duplicate ", what, " ",
                                    Quote(items[i].*field), " (also ", list,
                                    "[", it->second, "])"));
    }
  }
  return absl::OkStatus();
}

// The element of `items` whose `field` equals `value`, or null (the
// Config lookups: FindApiKey, FindConsumer, FindProducer, FindMapping).
template <typename T>
const T* FindBy(const std::vector<T>& items, std::string T::*field,
                std::string_view value) {
  for (const T& item : items) {
    if (item.*field == value) return &item;
  }
  return nullptr;
}

// YAML → Value for free-form data (remote_value_filters). Plain scalars
// become numbers, booleans or null when they read as such; quoted scalars
// are always strings, as a YAML user expects.
inline Value YamlToValue(const YAML::Node& node) {
  if (!node.IsDefined() || node.IsNull()) return Value::Null();
  if (node.IsSequence()) {
    Value::Array items;
    for (const auto& item : node) items.push_back(YamlToValue(item));
    return Value::FromArray(std::move(items));
  }
  if (node.IsMap()) {
    Value::Object fields;
    for (const auto& entry : node) {
      fields[entry.first.Scalar()] = YamlToValue(entry.second);
    }
    return Value::FromObject(std::move(fields));
  }
  const std::string& text = node.Scalar();
  if (node.Tag() == "?") {  // plain (unquoted) scalar
    if (text == "true" || text == "True") return Value::Bool(true);
    if (text == "false" || text == "False") return Value::Bool(false);
    if (Value::IsNumberText(text)) return Value::Number(text);
  }
  return Value::String(text);
}


// The loader's section parsers, one method per YAML section, each reporting
// the first problem at its key's path. Their definitions are split by side:
// config.cc (top level, doctypes, api keys, TLS and the checks both sides
// use), config_producer.cc (producer:) and config_consumer.cc (consumer:).
class Parser {
 public:
  explicit Parser(absl::string_view filename) : errors_(filename) {}

  absl::StatusOr<Config> Parse(const YAML::Node& root);

 private:
  // ---- shared (config.cc)
  absl::Status ParseDocType(const YAML::Node& node, const std::string& path,
                            DocTypeDef* def);
  absl::Status ParseField(const YAML::Node& node, const std::string& path,
                          FieldDef* field);
  absl::Status ParseSecretRef(const MapReader& m, absl::string_view env_key,
                              absl::string_view file_key, SecretRef* ref);
  absl::Status ParseApiKeys(const MapReader& section, bool admin_only,
                            std::vector<ApiKeyConfig>* keys);
  absl::Status CheckCondition(const std::string& path,
                              const std::string& condition);
  absl::Status CheckSubscribable(const std::string& path,
                                 const DocTypeRegistry& registry,
                                 const std::string& doctype);
  absl::Status Int(const MapReader& m, absl::string_view key, int lo, int hi,
                   int* out);
  absl::Status RefreshInterval(const MapReader& m, absl::Duration* out);
  absl::Status TlsPath(const MapReader& m, absl::string_view key,
                       std::string* out, bool required);
  absl::Status ParseTlsServer(const YAML::Node& node, const std::string& path,
                              TlsServerConfig* tls);
  absl::Status ParseTlsClient(const YAML::Node& node, const std::string& path,
                              TlsClientConfig* tls);

  // ---- producer: (config_producer.cc)
  absl::Status ParseProducer(const YAML::Node& node,
                             const DocTypeRegistry& registry,
                             ProducerConfig* producer);
  absl::Status ParseDatabasePool(const YAML::Node& node,
                                 DatabasePoolConfig* pool);
  absl::Status ParseConditionFunctions(const MapReader& m,
                                       std::vector<std::string>* out);
  absl::Status ParseConsumerSite(const YAML::Node& node,
                                 const std::string& path,
                                 const DocTypeRegistry& registry,
                                 ConsumerSiteConfig* c);
  absl::Status ParseWebhooks(const MapReader& m,
                             const DocTypeRegistry& registry,
                             std::vector<WebhookConfig>* webhooks);
  absl::Status CheckConsumerSites(
      const std::vector<ConsumerSiteConfig>& consumers);
  absl::Status ParseWebhookDelivery(
      const YAML::Node& node, const std::vector<std::string>& own_secret_env,
      WebhookDeliveryConfig* d);
  absl::Status ParseRetention(const YAML::Node& node, RetentionConfig* r);
  absl::Status ParseRuntimeSecretEnv(
      const MapReader& m, const std::vector<std::string>& own_secret_env,
      std::vector<std::string>* out);
  absl::Status ParseWebhook(const YAML::Node& node, const std::string& path,
                            const DocTypeRegistry& registry, WebhookConfig* w);

  // ---- consumer: (config_consumer.cc)
  absl::Status ParseConsumer(const YAML::Node& node,
                             const DocTypeRegistry& registry,
                             ConsumerConfig* consumer);
  absl::Status ParseFieldMapping(const YAML::Node& node,
                                 const std::string& path, FieldMapping* f);
  absl::Status ParseMapping(const YAML::Node& node, const std::string& path,
                            DocTypeMapping* mapping);
  absl::Status CheckMappings(const DocTypeRegistry& registry,
                             const ConsumerConfig& consumer);
  absl::Status CheckFieldMapping(const ConsumerConfig& consumer,
                                 const DocTypeDef& local, const FieldMapping& f,
                                 const std::string& fpath);
  absl::Status ParseProducerDocType(const YAML::Node& node,
                                    const std::string& path,
                                    ProducerDocTypeConfig* d);
  absl::Status ParseEventProducer(const YAML::Node& node,
                                  const std::string& path,
                                  EventProducerConfig* p);
  absl::Status CheckProducers(const DocTypeRegistry& registry,
                              const ConsumerConfig& consumer);
  absl::StatusOr<const DocTypeMapping*> KnownMapping(
      const ConsumerConfig& consumer, const std::string& name,
      const std::string& path);

  Errors errors_;
};

}  // namespace eventstream::config_internal

#endif  // EVENTSTREAM_LIBSYNC_CONFIG_CONFIG_READER_H_
